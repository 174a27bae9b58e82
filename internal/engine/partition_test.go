package engine_test

// An instance cut off from the shared store (Redis) while its members
// keep playing: what its members may still do, what they are told, and
// what they see when the store is back (docs/redis.md, "What a network
// fault does to a band").

import (
	"slices"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/engine/enginetest"
	"github.com/bandsync/bandsync/internal/protocol"
)

// memberSnapshotVersions lists the versions of every snapshot n sent to
// the session or to one of its members, in order: what n's members saw.
func memberSnapshotVersions(n *node, session string) []uint64 {
	var vs []uint64
	for _, c := range n.out.Events(protocol.EventSnapshot) {
		st := c.Payload.(engine.State)
		if st.SessionID == session && (c.Kind == enginetest.KindToSession || c.Kind == enginetest.KindToMember) {
			vs = append(vs, st.Version)
		}
	}
	return vs
}

func lastBroadcast(t *testing.T, n *node, session string) engine.State {
	t.Helper()
	var last *engine.State
	for _, c := range n.out.Events(protocol.EventSnapshot) {
		if c.Kind == enginetest.KindToSession && c.Session == session {
			st := c.Payload.(engine.State)
			last = &st
		}
	}
	if last == nil {
		t.Fatalf("no snapshot was sent to %s", session)
	}
	return *last
}

// Cut off from the store, an instance refuses the changes of a band with
// members elsewhere (they could not reach them) with STORE_UNAVAILABLE,
// keeps ticking it, and keeps serving a band whose members are all its
// own from memory, written back when the store returns.
func TestCutOffRefusesWhatCannotReachTheBand(t *testing.T) {
	_, n := cluster(t, multiConfig(), "A", "B")
	a, b := n[0], n[1]
	mustJoin(t, a, "lead", "s1")
	mustJoin(t, b, "f", "s1")
	mustJoin(t, a, "solo", "s2")
	played := ok(t)(a.e.Play("lead", "s1", 0))
	eventually(t, "B plays", func() bool { st, _ := b.e.Session("s1"); return st.Version == played.Version })

	a.st.cut.Store(true)
	wantCode(t, second(a.e.Seek("lead", "s1", 60_000)), protocol.CodeStoreUnavailable)
	wantCode(t, second(a.e.SetTempo("lead", "s1", 90)), protocol.CodeStoreUnavailable)
	wantCode(t, second(a.e.Join("late", engine.JoinRequest{SessionID: "s1"})), protocol.CodeStoreUnavailable)
	if st, _ := a.e.Session("s1"); st.Version != played.Version || st.Tempo != engine.DefaultTempo {
		t.Fatalf("a refused change was applied: %+v", st)
	}
	a.out.Reset()
	a.clk.Advance(time.Second)
	a.e.Tick(a.clk.Now())
	if ticks := a.out.Events(protocol.EventScrollTick); len(ticks) != 1 || ticks[0].Payload.(engine.Tick).PositionMs != 1000 {
		t.Fatalf("ticks while cut off: %+v; want one at 1000 ms", ticks)
	}
	// All of s2's members are here: nothing can split it.
	msg := ok(t)(a.e.UpdateMessage("solo", "s2", "from memory"))

	a.st.heal()
	eventually(t, "s2 written back", func() bool {
		st, _ := b.e.Session("s2")
		return st.Version == msg.Version && st.Message == "from memory"
	})
	sought := ok(t)(a.e.Seek("lead", "s1", 60_000))
	eventually(t, "the next seek reaches B", func() bool {
		return lastBroadcast(t, b, "s1").Version == sought.Version
	})
}

// Cut off for longer than presence: the instance stops naming a leader
// before the others can elect one, so no two leaders are named at once;
// when the store returns, its members get the state the others made
// meanwhile (the lead passed on), at a version above every one they were
// sent, and the presence of its sockets is replayed on it.
func TestCutOffPastPresenceFencesTheLeadAndHeals(t *testing.T) {
	_, n := cluster(t, multiConfig(), "A", "B")
	a, b := n[0], n[1]
	mustJoin(t, a, "lead", "s1")
	mustJoin(t, a, "fa", "s1")
	mustJoin(t, b, "fb", "s1")
	played := ok(t)(a.e.Play("lead", "s1", 0))
	eventually(t, "B plays", func() bool { st, _ := b.e.Session("s1"); return st.Version == played.Version })

	a.st.cut.Store(true)
	// fa's socket drops, comes back and drops again meanwhile: recorded
	// here, so A's members are sent more versions than the others make.
	a.e.Detach("fa")
	a.e.Attach("fa")
	a.e.Detach("fa")
	a.e.FenceIfCutOff()
	if st, _ := a.e.Session("s1"); leaderOf(st) != "lead" {
		t.Fatalf("fenced before the presence lapsed: leader %q", leaderOf(st))
	}
	a.st.lapsed.Store(true)
	a.e.FenceIfCutOff()
	fenced := lastBroadcast(t, a, "s1")
	if leaderOf(fenced) != "" || roleOf(t, fenced, "lead") != engine.RoleFollower {
		t.Fatalf("A's members still see a leader once the others may take A for dead: %+v", fenced)
	}
	if st, _ := a.e.Session("s1"); leaderOf(st) != "" {
		t.Fatalf("A's copy still names leader %q", leaderOf(st))
	}
	wantCode(t, second(a.e.SetRole("lead", "s1", engine.RoleLeader)), protocol.CodeStoreUnavailable)
	wantCode(t, second(a.e.Seek("lead", "s1", 5)), protocol.CodeStoreUnavailable)

	// B takes A for dead, and after the grace the lead passes to fb.
	b.e.Reap("A", []string{"s1"})
	b.clk.Advance(5 * time.Second)
	eventually(t, "fb leads on B", func() bool { st, _ := b.e.Session("s1"); return leaderOf(st) == "fb" })
	seen := slices.Max(memberSnapshotVersions(a, "s1"))

	a.st.heal()
	var healed engine.State
	eventually(t, "A rejoins the stored state", func() bool {
		healed, _ = a.e.Session("s1")
		st, _ := b.e.Session("s1")
		return leaderOf(healed) == "fb" && healed.Version == st.Version && memberConnected(healed, "lead")
	})
	if healed.Version <= seen {
		t.Fatalf("healed at version %d; A's members had been sent %d, and drop an older snapshot", healed.Version, seen)
	}
	if vs := memberSnapshotVersions(a, "s1"); vs[len(vs)-1] != healed.Version {
		t.Fatalf("A's members were last sent version %d, not the healed %d (all: %v)", vs[len(vs)-1], healed.Version, vs)
	}
	if memberConnected(healed, "fa") {
		t.Fatal("fa dropped while A was cut off but is connected in the healed state")
	}
	wantCode(t, second(a.e.Seek("lead", "s1", 1)), protocol.CodeNotLeader)
}

// Cut off long enough to fence, healed before the others elect anyone:
// the lead is the leader's again, and A's members see it at a version
// above the fenced one.
func TestFencedLeadComesBackWhenHealedInTime(t *testing.T) {
	_, n := cluster(t, multiConfig(), "A", "B")
	a, b := n[0], n[1]
	mustJoin(t, a, "lead", "s1")
	mustJoin(t, b, "fb", "s1")
	played := ok(t)(a.e.Play("lead", "s1", 0))
	eventually(t, "B plays", func() bool { st, _ := b.e.Session("s1"); return st.Version == played.Version })

	a.st.cut.Store(true)
	a.st.lapsed.Store(true)
	a.e.FenceIfCutOff()
	fenced := lastBroadcast(t, a, "s1")
	if leaderOf(fenced) != "" {
		t.Fatalf("not fenced: %+v", fenced)
	}
	b.e.Reap("A", []string{"s1"}) // detached, still leading for the grace
	a.st.heal()
	eventually(t, "the lead is back", func() bool {
		st := lastBroadcast(t, a, "s1")
		sb, _ := b.e.Session("s1")
		return leaderOf(st) == "lead" && st.Version > fenced.Version && memberConnected(st, "lead") &&
			sb.Version == st.Version && memberConnected(sb, "lead")
	})
	sought := ok(t)(a.e.Seek("lead", "s1", 30_000))
	eventually(t, "the next seek reaches B", func() bool { return lastBroadcast(t, b, "s1").Version == sought.Version })
}

func memberConnected(st engine.State, id string) bool {
	for _, m := range st.Members {
		if m.SocketID == id {
			return m.Connected
		}
	}
	return false
}

// The store goes away while a seek's commit is under way: whether it
// landed is unknown, so the seek is acknowledged (served from memory),
// not refused, and when the store is back it is in effect everywhere
// whether it had landed, had not, or the others changed the session
// meanwhile.
func TestCommitUnderWayWhenTheStoreGoes(t *testing.T) {
	for _, c := range []struct {
		name   string
		mode   int32
		others bool // B changes the session while A is cut off
	}{
		{"landed", cutLanded, false},
		{"lost", cutLost, false},
		{"lost, others moved on", cutLost, true},
		{"lost, the lead passed on meanwhile", cutLost, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, n := cluster(t, multiConfig(), "A", "B")
			a, b := n[0], n[1]
			mustJoin(t, a, "lead", "s1")
			mustJoin(t, b, "fb", "s1")
			played := ok(t)(a.e.Play("lead", "s1", 0))
			eventually(t, "B plays", func() bool { st, _ := b.e.Session("s1"); return st.Version == played.Version })

			a.st.cutAtCommit.Store(c.mode)
			sought, err := a.e.Seek("lead", "s1", 77_000)
			if err != nil {
				t.Fatalf("a seek whose commit was under way when the store went: %v; want it acknowledged", err)
			}
			if c.others {
				ok(t)(b.e.UpdateMessage("fb", "s1", "meanwhile on B"))
			}
			passes := c.name == "lost, the lead passed on meanwhile"
			if passes {
				b.e.Reap("A", []string{"s1"})
				b.clk.Advance(5 * time.Second)
				eventually(t, "fb leads", func() bool { st, _ := b.e.Session("s1"); return leaderOf(st) == "fb" })
			}
			a.clk.Advance(time.Second)
			if !passes {
				b.clk.Advance(time.Second)
			}
			a.st.heal()
			// Played on from the seek: 1 s on the clocks (6 s on B's
			// when the lead passed).
			lo, hi := 77_000.0, 78_500.0
			if passes {
				hi = 83_500
			}
			eventually(t, "both instances at the seek's position", func() bool {
				sa, _ := a.e.Session("s1")
				sb, _ := b.e.Session("s1")
				return sa.Version == sb.Version && sa.Version > sought.Version-1 && sb.Position >= lo && sb.Position < hi &&
					sa.Position >= lo && sa.Position < hi
			})
			if sb, _ := b.e.Session("s1"); passes && leaderOf(sb) != "fb" {
				t.Fatalf("the late seek changed the lead: %q", leaderOf(sb))
			}
			if sb, _ := b.e.Session("s1"); c.others && sb.Message != "meanwhile on B" {
				t.Fatalf("B's change was lost: message %q", sb.Message)
			}
		})
	}
}
