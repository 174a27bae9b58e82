package socketio

import (
	"strings"
	"testing"
	"time"
)

// Each socket gets the ticks it asked for: every one by default, none, or
// at most one per interval; state changes reach all of them regardless.
func TestTicksOnDemand(t *testing.T) {
	s := testServer(t, Options{})
	every, none, slow := newSink(), newSink(), newSink()
	cEvery, cNone, cSlow := newTestConn(s, "every", every), newTestConn(s, "none", none), newTestConn(s, "slow", slow)
	for _, c := range []*Conn{cEvery, cNone, cSlow} {
		c.Join("band")
	}
	cNone.SetTickInterval(NoTicks)
	cSlow.SetTickInterval(100 * time.Millisecond)
	start := time.Now()
	var span time.Duration
	for range 10 {
		span = time.Since(start)
		if err := s.BroadcastVolatile("band", "scroll_tick", map[string]int{"v": 1}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(16 * time.Millisecond)
	}
	if err := s.Broadcast("band", "snapshot", map[string]int{"version": 2}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Conn{cEvery, cNone, cSlow} {
		waitIdle(t, c)
	}
	ticks := func(k *sinkConn) int { return strings.Count(k.written(), `"scroll_tick"`) }
	if n := ticks(every); n != 10 {
		t.Errorf("default socket got %d of 10 ticks", n)
	}
	if n := ticks(none); n != 0 {
		t.Errorf("socket that asked for no ticks got %d", n)
	}
	// 10 ticks 16+ ms apart span at least 144 ms: at most one per 100 ms
	// is 2 (the first, and one >= 100 ms later), more only if a loaded
	// machine stretched the sleeps.
	if n, most := ticks(slow), 1+int(span/(100*time.Millisecond)); n < min(2, most) || n > most {
		t.Errorf("socket at one per 100 ms got %d ticks in %v, want 1 to %d", n, span, most)
	}
	for name, k := range map[string]*sinkConn{"every": every, "none": none, "slow": slow} {
		if !strings.Contains(k.written(), `"snapshot",{"version":2}`) {
			t.Errorf("%s did not get the snapshot", name)
		}
	}
}

// The slower rate follows a schedule, so over many 16 ms ticks it averages
// the interval asked for instead of drifting up to the next multiple of 16.
func TestTickScheduleDoesNotDrift(t *testing.T) {
	c := &Conn{}
	c.SetTickInterval(100 * time.Millisecond)
	sent := 0
	const tick = int64(16 * time.Millisecond)
	for i := range int64(1000) { // 16 s of ticks
		if c.wantsTick(i * tick) {
			sent++
		}
	}
	if sent < 158 || sent > 161 {
		t.Fatalf("16 s at one per 100 ms sent %d ticks, want ~160", sent)
	}
}
