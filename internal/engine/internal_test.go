package engine

import (
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
