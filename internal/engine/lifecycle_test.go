package engine_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/engine/enginetest"
	"github.com/bandsync/bandsync/internal/protocol"
)

func TestTicksOnlyForPlayingSessionsFromTheAnchor(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	f.join("b", "s2")
	f.join("c", "s3")
	ok(t)(f.e.Seek("a", "s1", 1000))
	ok(t)(f.e.Play("a", "s1", 0))
	ok(t)(f.e.Play("c", "s3", 0))
	ok(t)(f.e.Pause("c", "s3"))
	if s := f.e.Stats(); s.PlayingSessions != 1 || s.Sessions != 3 || s.Members != 3 {
		t.Fatalf("Stats = %+v", s)
	}
	f.clk.Advance(777 * time.Millisecond)
	f.out.Reset()
	now := f.clk.Now()
	f.e.Tick(now)
	calls := f.out.Calls()
	if len(calls) != 1 || calls[0].Kind != enginetest.KindVolatile || calls[0].Session != "s1" || calls[0].Event != protocol.EventScrollTick {
		t.Fatalf("tick sent %v, want one volatile scroll_tick to s1", f.out.Names())
	}
	want := engine.Tick{SessionID: "s1", PositionMs: 1777, TempoBpm: 120, ServerTimestamp: ms(now),
		Version: f.state("s1").Version, Beat: 1777 * 120.0 / 60000}
	got := calls[0].Payload.(engine.Tick)
	if math.Abs(got.Beat-want.Beat) > 1e-9 {
		t.Fatalf("tick beat = %v, want %v", got.Beat, want.Beat)
	}
	got.Beat = want.Beat
	if got != want {
		t.Fatalf("tick = %+v, want %+v", got, want)
	}

	ok(t)(f.e.Stop("a", "s1"))
	f.out.Reset()
	f.e.Tick(f.clk.Now())
	if len(f.out.Calls()) != 0 {
		t.Fatalf("ticks after stop: %v", f.out.Names())
	}
	if s := f.e.Stats(); s.PlayingSessions != 0 {
		t.Fatalf("playing sessions after stop = %d", s.PlayingSessions)
	}
}

// A session this instance no longer needs (nobody here, nobody detached
// whose timers it runs) is dropped from memory by the sweep; the store
// keeps it for whoever joins next, who finds it as it was.
func TestSweepDropsSessionsNobodyHereNeeds(t *testing.T) {
	f := newFixture(t)
	f.join("a", "empty")
	f.join("b", "detached")
	f.join("c", "busy")
	ok(t)(f.e.SetTempo("a", "empty", 90))
	ok(t)(f.e.Play("b", "detached", 0))
	f.e.Remove("a")
	f.e.Detach("b")
	if n := f.e.Sweep(); n != 1 {
		t.Fatalf("swept %d, want 1 (empty)", n)
	}
	if s := f.e.Stats(); s.Sessions != 2 || s.PlayingSessions != 1 || s.Members != 2 {
		t.Fatalf("after the sweep Stats = %+v, want detached and busy", s)
	}
	// Still readable (from the store), and a join carries on from it.
	before, ok := f.e.Session("empty")
	if !ok || before.Tempo != 90 || before.MemberCount != 0 {
		t.Fatalf("swept session read back: %+v, %v", before, ok)
	}
	if st := f.join("z", "empty"); st.Version != before.Version+1 || st.Tempo != 90 || st.MemberCount != 1 {
		t.Fatalf("re-joined swept session: version %d (want %d) tempo %v members %d", st.Version, before.Version+1, st.Tempo, st.MemberCount)
	}
	// b is removed when its recovery window runs out; then nobody needs
	// the session here.
	f.clk.Advance(2 * time.Minute)
	if n := f.e.Sweep(); n != 1 {
		t.Fatalf("swept %d, want 1 (detached, after its recovery window)", n)
	}
	if s := f.e.Stats(); s.Sessions != 2 || s.PlayingSessions != 0 || s.Members != 2 {
		t.Fatalf("after the second sweep Stats = %+v, want busy and empty", s)
	}
}

// A record the store no longer has (expired while idle) does not reset the
// session its members are still in: the next change writes the copy back.
func TestExpiredRecordIsWrittenBackByTheNextChange(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	before := ok(t)(f.e.SetTempo("a", "s1", 90))
	if err := f.st.Delete(t.Context(), "s1"); err != nil {
		t.Fatal(err)
	}
	st := ok(t)(f.e.UpdateMessage("a", "s1", "still here"))
	rec, found, _ := f.st.Load(t.Context(), "s1")
	if !found || st.Version != before.Version+1 || rec.Version != st.Version || rec.Tempo != 90 || len(rec.Members) != 1 || rec.Message != "still here" {
		t.Fatalf("after expiry: state %+v\nstored %+v (found %v)", st, rec, found)
	}
}

func TestRunTicksUntilCancelled(t *testing.T) {
	f := newFixture(t, func(c *engine.Config) { c.TickInterval = 10 * time.Millisecond })
	f.join("a", "s1")
	ok(t)(f.e.Play("a", "s1", 0))
	f.out.Reset()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { f.e.Run(ctx); close(done) }()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// A 10 ms interval is ticked in five 2 ms phases; the one session
	// ticks once per interval, in its own phase.
	for i := 1; i <= 3; i++ {
		for phase := 0; phase < 5; phase++ {
			waitFor("Run to arm its timer", func() bool { return f.clk.Pending() == 1 })
			f.clk.Advance(2 * time.Millisecond)
		}
		waitFor("a tick", func() bool { return len(f.out.Events(protocol.EventScrollTick)) == i })
	}
	for i, c := range f.out.Events(protocol.EventScrollTick) {
		if p := c.Payload.(engine.Tick).PositionMs; p != float64(10*(i+1)) {
			t.Fatalf("tick %d position = %v, want %d", i, p, 10*(i+1))
		}
	}
	cancel()
	<-done
	if f.clk.Pending() != 0 {
		t.Fatal("Run left its timer armed after returning")
	}
}
