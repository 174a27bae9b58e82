package redisstore_test

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/redisstore"
	"github.com/bandsync/bandsync/internal/store"
)

func engineConfig() engine.Config {
	return engine.Config{LeaderGrace: 300 * time.Millisecond, RecoveryWindow: 1500 * time.Millisecond}
}

// contiguous reports whether vs increases by exactly one each step.
func contiguous(vs []uint64) bool {
	for i := 1; i < len(vs); i++ {
		if vs[i] != vs[i-1]+1 {
			return false
		}
	}
	return len(vs) > 0
}

// Members on two instances see every change of the session, in version
// order, each event under its log id; memberCount counts both instances.
func TestTwoInstancesDeliverInVersionOrder(t *testing.T) {
	url, pfx := sharedURL(t), prefix(t)
	a := newInstance(t, open(t, url, pfx, "A"), engineConfig())
	b := newInstance(t, open(t, url, pfx, "B"), engineConfig())
	if _, err := a.eng.Join("m1", engine.JoinRequest{SessionID: "s1", DisplayName: "Ann"}); err != nil {
		t.Fatal(err)
	}
	st, err := b.eng.Join("m2", engine.JoinRequest{SessionID: "s1", DisplayName: "Bob"})
	if err != nil {
		t.Fatal(err)
	}
	if st.MemberCount != 2 || leaderOf(st) != "m1" {
		t.Fatalf("joining on the second instance: memberCount %d leader %q; want 2 and m1", st.MemberCount, leaderOf(st))
	}
	steps := []func() (engine.State, error){
		func() (engine.State, error) { return a.eng.Play("m1", "s1", 0) },
		func() (engine.State, error) { return a.eng.Seek("m1", "s1", 5000) },
		func() (engine.State, error) { return a.eng.SetTempo("m1", "s1", 140) },
		func() (engine.State, error) { return b.eng.UpdateMessage("m2", "s1", "chorus") },
		func() (engine.State, error) { return a.eng.Pause("m1", "s1") },
	}
	var last engine.State
	for i, f := range steps {
		if last, err = f(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	eventually(t, 3*time.Second, "both members got the last snapshot", func() bool {
		va, vb := a.out.snapshotVersions("m1"), b.out.snapshotVersions("m2")
		return len(va) > 0 && va[len(va)-1] == last.Version && len(vb) > 0 && vb[len(vb)-1] == last.Version
	})
	va, vb := a.out.snapshotVersions("m1"), b.out.snapshotVersions("m2")
	if !contiguous(va) || va[0] != 1 || !contiguous(vb) || vb[0] != 2 {
		t.Fatalf("snapshot versions: m1 %v (want 1..%d), m2 %v (want 2..%d)", va, last.Version, vb, last.Version)
	}
	// Both see the same events after m2 joined, with the same offsets.
	tail := func(ds []delivery) []delivery {
		for i, d := range ds {
			if d.Event == protocol.EventPlay {
				return ds[i:]
			}
		}
		return nil
	}
	ea, eb := tail(a.out.events("m1")), tail(b.out.events("m2"))
	if len(ea) == 0 || len(ea) != len(eb) {
		t.Fatalf("m1 got %d events after play, m2 %d", len(ea), len(eb))
	}
	for i := range ea {
		if ea[i].Event != eb[i].Event || ea[i].Offset != eb[i].Offset || ea[i].Offset == "" {
			t.Fatalf("event %d: m1 %s@%s, m2 %s@%s", i, ea[i].Event, ea[i].Offset, eb[i].Event, eb[i].Offset)
		}
		if i > 0 && store.CompareLogIDs(ea[i-1].Offset, ea[i].Offset) >= 0 {
			t.Fatalf("offsets not increasing: %s then %s", ea[i-1].Offset, ea[i].Offset)
		}
	}
	for _, in := range []*instance{a, b} {
		got, ok := in.eng.Session("s1")
		if !ok || got.MemberCount != 2 || got.Version != last.Version || got.Message != "chorus" || got.Tempo != 140 {
			t.Fatalf("instance %s sees %+v", in.rs.Instance(), got)
		}
	}
}

// muted is a backend whose deliveries can be switched off, to give an
// instance a stale copy of a session on purpose.
type muted struct {
	*redisstore.Redis
	off atomic.Bool
}

func (m *muted) Listen(l store.Listener) { m.Redis.Listen(mutedListener{m, l}) }

type mutedListener struct {
	m *muted
	l store.Listener
}

func (ml mutedListener) Deliver(id string, b store.Batch) {
	if !ml.m.off.Load() {
		ml.l.Deliver(id, b)
	}
}

func (ml mutedListener) Resync() { ml.l.Resync() }

// A leader deposed on another instance cannot drive the session from an
// instance that has not heard of it yet: its command, evaluated on the
// stale copy, fails the compare-and-set, is evaluated again on the stored
// record, and is refused.
func TestStaleLeaderIsRefused(t *testing.T) {
	url, pfx := sharedURL(t), prefix(t)
	ma := &muted{Redis: open(t, url, pfx, "A")}
	a := &instance{eng: engine.New(engineConfig(), nil, newRecorder(), ma, nil)}
	bcfg := engineConfig()
	bcfg.OpenLeadership = true // so m2 can take over from a sitting leader
	b := newInstance(t, open(t, url, pfx, "B"), bcfg)
	if _, err := a.eng.Join("m1", engine.JoinRequest{SessionID: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.eng.Join("m2", engine.JoinRequest{SessionID: "s1"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "A saw m2 join", func() bool { st, _ := a.eng.Session("s1"); return st.MemberCount == 2 })
	ma.off.Store(true)
	took, err := b.eng.SetRole("m2", "s1", engine.RoleLeader)
	if err != nil || leaderOf(took) != "m2" {
		t.Fatalf("takeover: leader %q err %v", leaderOf(took), err)
	}
	if st, _ := a.eng.Session("s1"); leaderOf(st) != "m1" {
		t.Fatalf("A's copy should still be stale, leader %q", leaderOf(st))
	}
	_, err = a.eng.Seek("m1", "s1", 9000)
	if code(err) != protocol.CodeNotLeader {
		t.Fatalf("seek by the deposed leader: %v, want NOT_LEADER", err)
	}
	got := stored(t, ma.Redis, "s1")
	if got.AnchorPositionMs == 9000 || got.LeaderID != "m2" || got.Version != took.Version {
		t.Fatalf("the deposed leader's seek landed: %+v", got)
	}
}

// Two members on two instances claim a vacant leadership at the same
// moment: exactly one gets it, the other is refused, every time.
func TestConcurrentClaimsExactlyOneWins(t *testing.T) {
	url, pfx := sharedURL(t), prefix(t)
	a := newInstance(t, open(t, url, pfx, "A"), engineConfig())
	b := newInstance(t, open(t, url, pfx, "B"), engineConfig())
	for round := range 20 {
		id := "claim" + itoa(uint64(round))
		if _, err := a.eng.Join("lead"+id, engine.JoinRequest{SessionID: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.eng.Join("x"+id, engine.JoinRequest{SessionID: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.eng.Join("y"+id, engine.JoinRequest{SessionID: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.eng.SetRole("lead"+id, id, engine.RoleFollower); err != nil { // vacant now
			t.Fatal(err)
		}
		eventually(t, 2*time.Second, "B saw the vacancy", func() bool { st, _ := b.eng.Session(id); return st.LeaderSocketID == nil })
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for i, c := range []struct {
			in *instance
			m  string
		}{{a, "x" + id}, {b, "y" + id}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[i] = c.in.eng.SetRole(c.m, id, engine.RoleLeader)
			}()
		}
		close(start)
		wg.Wait()
		wins := 0
		for _, err := range errs {
			switch code(err) {
			case "":
				wins++
			case protocol.CodeNotLeader:
			default:
				t.Fatalf("round %d: claim failed with %v", round, err)
			}
		}
		rec := stored(t, a.rs, id)
		if wins != 1 || rec.LeaderID == "" {
			t.Fatalf("round %d: %d claims won (errors %v), stored leader %q", round, wins, errs, rec.LeaderID)
		}
	}
}

// An instance that dies without a word: the survivors notice its silence,
// detach its members (memberCount unchanged, connected false), hand the
// leadership on after the grace period, and remove the members after the
// recovery window.
func TestDeadInstanceMembersAreDetachedThenRemoved(t *testing.T) {
	url, pfx := sharedURL(t), prefix(t)
	a := newInstance(t, open(t, url, pfx, "A"), engineConfig())
	brs := open(t, url, pfx, "B")
	b := newInstance(t, brs, engineConfig())
	if _, err := b.eng.Join("lead", engine.JoinRequest{SessionID: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.eng.Join("follow", engine.JoinRequest{SessionID: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.eng.Play("lead", "s1", 0); err != nil {
		t.Fatal(err)
	}
	_ = brs.Close() // B is gone: no heartbeat, no goodbye
	died := time.Now()
	member := func(st engine.State, id string) (engine.Member, bool) {
		i := slices.IndexFunc(st.Members, func(m engine.Member) bool { return m.SocketID == id })
		if i < 0 {
			return engine.Member{}, false
		}
		return st.Members[i], true
	}
	eventually(t, 3*time.Second, "B's member detached", func() bool {
		st, _ := a.eng.Session("s1")
		m, ok := member(st, "lead")
		return ok && !m.Connected
	})
	st, _ := a.eng.Session("s1")
	// The detached leader is still a member (it may recover) but no longer
	// counted: memberCount is of connected members.
	if leaderOf(st) != "lead" || st.MemberCount != 1 || len(st.Members) != 2 || !st.IsPlaying {
		t.Fatalf("right after detaching: leader %q, memberCount %d, members %d, playing %v; want lead, 1, 2, true", leaderOf(st), st.MemberCount, len(st.Members), st.IsPlaying)
	}
	eventually(t, 3*time.Second, "leadership handed on after the grace period", func() bool {
		st, _ := a.eng.Session("s1")
		return leaderOf(st) == "follow"
	})
	if waited := time.Since(died); waited < engineConfig().LeaderGrace {
		t.Fatalf("leadership moved %v after the death, before the grace period", waited)
	}
	eventually(t, 4*time.Second, "B's member removed after the recovery window", func() bool {
		st, _ := a.eng.Session("s1")
		_, ok := member(st, "lead")
		return !ok && st.MemberCount == 1
	})
	if rec := stored(t, a.rs, "s1"); len(rec.Members) != 1 || rec.Members[0].SocketID != "follow" {
		t.Fatalf("stored members %+v", rec.Members)
	}
}

// A leader whose instance died resumes on another instance within the
// grace period: it keeps the leadership, now stamped on its new instance,
// and the survivors' reaping does not detach it again.
func TestLeaderRecoversOnAnotherInstance(t *testing.T) {
	url, pfx := sharedURL(t), prefix(t)
	a := newInstance(t, open(t, url, pfx, "A"), engine.Config{LeaderGrace: 2 * time.Second, RecoveryWindow: 5 * time.Second})
	brs := open(t, url, pfx, "B")
	b := newInstance(t, brs, engineConfig())
	if _, err := b.eng.Join("lead", engine.JoinRequest{SessionID: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.eng.Join("follow", engine.JoinRequest{SessionID: "s1"}); err != nil {
		t.Fatal(err)
	}
	_ = brs.Close()
	a.eng.Attach("lead", "s1") // the socket recovered on A
	st, _ := a.eng.Session("s1")
	if leaderOf(st) != "lead" {
		t.Fatalf("after recovering on A the leader is %q", leaderOf(st))
	}
	if _, err := a.eng.Seek("lead", "s1", 1234); err != nil {
		t.Fatalf("the recovered leader cannot lead: %v", err)
	}
	// Past B's reaping and the grace period: still the leader, connected.
	time.Sleep(2500 * time.Millisecond)
	st, _ = a.eng.Session("s1")
	rec := stored(t, a.rs, "s1")
	i := slices.IndexFunc(rec.Members, func(m store.Member) bool { return m.SocketID == "lead" })
	if leaderOf(st) != "lead" || i < 0 || !rec.Members[i].Connected || rec.Members[i].Instance != "A" {
		t.Fatalf("leader %q, stored members %+v", leaderOf(st), rec.Members)
	}
}

// A session whose keys expired while its members stayed connected (a band
// idle past SESSION_TTL) is not reset by the next change: the instance
// writes its copy back and the change lands on it.
func TestExpiredSessionIsWrittenBackByTheNextChange(t *testing.T) {
	url, pfx := sharedURL(t), prefix(t)
	rs := open(t, url, pfx, "A", func(o *redisstore.Options) { o.SessionTTL = 300 * time.Millisecond })
	a := newInstance(t, rs, engineConfig())
	if _, err := a.eng.Join("m1", engine.JoinRequest{SessionID: "s1", DisplayName: "Ann"}); err != nil {
		t.Fatal(err)
	}
	before, _ := a.eng.SetTempo("m1", "s1", 90)
	eventually(t, 3*time.Second, "keys expired", func() bool {
		_, ok, _ := rs.Load(t.Context(), "s1")
		return !ok
	})
	st, err := a.eng.UpdateMessage("m1", "s1", "still here")
	if err != nil {
		t.Fatalf("a change after expiry: %v", err)
	}
	got := stored(t, rs, "s1")
	if st.Version != before.Version+1 || got.Version != st.Version || got.Tempo != 90 || len(got.Members) != 1 || got.Message != "still here" {
		t.Fatalf("after expiry: state %+v\nstored %+v", st, got)
	}
}
