package engine

import (
	"encoding/json"
	"testing"
	"time"
)

func TestNextDeadlineStaysOnTheGridAndSkipsMissedSlots(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	iv := 16 * time.Millisecond
	cases := []struct {
		late time.Duration // now - start
		want time.Duration // next - start
	}{
		{0, 16 * time.Millisecond},
		{16 * time.Millisecond, 32 * time.Millisecond},                       // woke on time
		{19 * time.Millisecond, 32 * time.Millisecond},                       // jitter does not shift the grid
		{31*time.Millisecond + 999*time.Microsecond, 32 * time.Millisecond},  // early wake-up
		{16*time.Millisecond + 100*time.Millisecond, 128 * time.Millisecond}, // very late: skip, no burst
		{time.Hour + 3*time.Millisecond, time.Hour + 16*time.Millisecond},    // 1 h is exactly 225000 slots
	}
	for _, c := range cases {
		if got := nextDeadline(start, start.Add(c.late), iv).Sub(start); got != c.want {
			t.Errorf("now = start+%v: next = start+%v, want start+%v", c.late, got, c.want)
		}
	}
}

func TestStepLeavesTheInputStateUntouched(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newSessionState("s", 10, now)
	s, _, err := step(s, joinCmd{member: "a", name: "A"}, now, policy{})
	if err != nil {
		t.Fatal(err)
	}
	before := s.clone()
	next, out, err := step(s, leaveCmd{member: "a", reason: ReasonLeaderLeft}, now.Add(time.Second), policy{})
	if err != nil || !out.changed {
		t.Fatalf("leave: changed %v err %v", out.changed, err)
	}
	if len(s.members) != 1 || s.members[0] != before.members[0] || s.version != before.version || s.leader != "a" {
		t.Fatalf("step modified its input: %+v", s)
	}
	if len(next.members) != 0 || next.version != s.version+1 || next.leader != "" {
		t.Fatalf("leave result: %+v", next)
	}
}

// Sessions are spread evenly over the tick phases, and ticking every phase
// once ticks every playing session exactly once.
func TestTickPhasesSpreadSessionsAndTickEachOncePerInterval(t *testing.T) {
	if got := tickSlots(16 * time.Millisecond); got != 8 {
		t.Fatalf("tickSlots(16ms) = %d, want 8", got)
	}
	if got := tickSlots(time.Millisecond); got != 1 {
		t.Fatalf("tickSlots(1ms) = %d, want 1", got)
	}
	e := &Engine{slots: 8, slotLoad: make([]int, 8)}
	var all []*session
	for i := 0; i < 20; i++ {
		s := &session{playIdx: -1}
		e.setPlaying(s, true)
		all = append(all, s)
	}
	for slot, n := range e.slotLoad {
		if n < 2 || n > 3 {
			t.Fatalf("phase %d holds %d of 20 sessions, want 2 or 3", slot, n)
		}
	}
	e.setPlaying(all[0], false)
	e.setPlaying(all[0], true)
	seen := map[*session]int{}
	for slot := 0; slot < e.slots; slot++ {
		e.playMu.Lock()
		for _, s := range e.playing {
			if s.slot == slot {
				seen[s]++
			}
		}
		e.playMu.Unlock()
	}
	for i, s := range all {
		if seen[s] != 1 {
			t.Fatalf("session %d is in %d phases, want 1", i, seen[s])
		}
	}
}

func TestTickJSONMatchesEncodingJSON(t *testing.T) {
	tk := Tick{SessionID: "band_1-x", PositionMs: 12345.678901, TempoBpm: 132.5, ServerTimestamp: 1795815239651.1382, Version: 42, Beat: 27.16}
	got, err := json.Marshal(tk)
	if err != nil {
		t.Fatal(err)
	}
	type plain Tick // the same fields without the MarshalJSON method
	want, _ := json.Marshal(plain(tk))
	if string(got) != string(want) {
		t.Fatalf("tick JSON\n got %s\nwant %s", got, want)
	}
}
