package engine

import (
	"encoding/json"
	"testing"
	"time"
)

// The scheduler stays on its grid, ticks the phases a late wake-up missed
// (each once), and never bursts more than one interval of them.
func TestDueTicksCatchUpMissedPhasesOnTheGrid(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	step := 2 * time.Millisecond // 16 ms in 8 phases
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	cases := []struct {
		name     string
		due, now time.Duration // since start
		first, n int64
		next     time.Duration
	}{
		{"on time", ms(16), ms(16), 8, 1, ms(18)},
		{"jitter does not shift the grid", ms(16), ms(17.9), 8, 1, ms(18)},
		{"early wake-up ticks its phase once", ms(32), ms(31.999), 16, 1, ms(34)},
		{"two phases late: three ticked", ms(16), ms(21), 8, 3, ms(22)},
		{"100 ms late: the last interval's 8 phases, once each", ms(16), ms(116), 51, 8, ms(118)},
		{"1 h is exactly 1,800,000 phases", time.Hour, time.Hour + ms(1), 1_800_000, 1, time.Hour + ms(2)},
	}
	for _, c := range cases {
		first, n, next := dueTicks(start, start.Add(c.due), start.Add(c.now), step, 8)
		if first != c.first || n != c.n || next.Sub(start) != c.next {
			t.Errorf("%s: ticks %d..+%d, next start+%v; want %d..+%d, next start+%v",
				c.name, first, n, next.Sub(start), c.first, c.n, c.next)
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
