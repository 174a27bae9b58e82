package engine_test

// Several instances over one store, without Redis: engines sharing one
// in-process store (store.Memory and its peers) are the multi-instance
// deployment with the network taken out. Deliveries to the other instance
// are asynchronous, as they are over Redis, so these tests poll.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/engine/enginetest"
	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/store"
)

// node is one engine of a multi-instance fixture.
type node struct {
	e   *engine.Engine
	st  *mutable
	clk *enginetest.FakeClock
	out *enginetest.Recorder
}

// mutable is an instance's view of the store whose deliveries can be cut,
// as an instance that has died or is partitioned from the others' updates
// (off), or that can be cut off from the store altogether, as one
// partitioned from Redis (cut, then lapsed once its presence would have
// expired, then heal).
type mutable struct {
	*store.Memory
	off    atomic.Bool
	cut    atomic.Bool
	lapsed atomic.Bool
	// cutAtCommit cuts the store at the next commit: after storing it
	// (cutLanded: the answer is what is lost) or before (cutLost).
	cutAtCommit atomic.Int32
	l           store.Listener
}

var errCut = errors.New("test: cut off from the store")

func (m *mutable) Listen(l store.Listener) {
	m.l = l
	m.Memory.Listen(mutedListener{m, l})
}

func (m *mutable) Available() bool      { return !m.cut.Load() }
func (m *mutable) PresenceLapsed() bool { return m.lapsed.Load() }

// heal ends a cut: the store is available again and says so, as Redis's
// supervisor does.
func (m *mutable) heal() {
	m.lapsed.Store(false)
	m.cut.Store(false)
	m.l.Resync()
}

func (m *mutable) Load(ctx context.Context, id string) (store.SessionRecord, bool, error) {
	if m.cut.Load() {
		return store.SessionRecord{}, false, errCut
	}
	return m.Memory.Load(ctx, id)
}

func (m *mutable) Follow(ctx context.Context, id string) (store.SessionRecord, bool, string, error) {
	if m.cut.Load() {
		return store.SessionRecord{}, false, "", errCut
	}
	return m.Memory.Follow(ctx, id)
}

const (
	cutLanded = 1
	cutLost   = 2
)

func (m *mutable) Commit(ctx context.Context, r store.SessionRecord, prev, term uint64, ops []store.Op) (store.Result, error) {
	if m.cut.Load() {
		return store.Result{}, errCut
	}
	switch m.cutAtCommit.Swap(0) {
	case cutLanded:
		_, _ = m.Memory.Commit(ctx, r, prev, term, ops)
		m.cut.Store(true)
		return store.Result{}, errCut
	case cutLost:
		m.cut.Store(true)
		return store.Result{}, errCut
	}
	return m.Memory.Commit(ctx, r, prev, term, ops)
}

func (m *mutable) WriteBack(ctx context.Context, r store.SessionRecord, ops []store.Op) (store.Result, error) {
	if m.cut.Load() {
		return store.Result{}, errCut
	}
	return m.Memory.WriteBack(ctx, r, ops)
}

func (m *mutable) Since(ctx context.Context, id, cursor string) ([]store.Batch, bool, error) {
	if m.cut.Load() {
		return nil, false, errCut
	}
	return m.Memory.Since(ctx, id, cursor)
}

type mutedListener struct {
	m *mutable
	l store.Listener
}

func (ml mutedListener) Deliver(id string, b store.Batch) {
	if !ml.m.off.Load() && !ml.m.cut.Load() {
		ml.l.Deliver(id, b)
	}
}

func (ml mutedListener) Resync() { ml.l.Resync() }

func multiConfig() engine.Config {
	return engine.Config{LeaderGrace: 5 * time.Second, RecoveryWindow: 2 * time.Minute, MaxSessions: 100}
}

// cluster returns engines named names over one in-process store, each with
// its own fake clock (so one instance's timers can be left unrun, as a
// dead instance's are).
func cluster(t *testing.T, cfg engine.Config, names ...string) (*store.Memory, []*node) {
	t.Helper()
	base := store.NewMemory()
	var nodes []*node
	for _, name := range names {
		n := &node{st: &mutable{Memory: base.Peer(name)}, clk: enginetest.NewFakeClock(t0), out: enginetest.NewRecorder()}
		n.e = engine.New(cfg, n.clk, n.out, n.st, nil)
		nodes = append(nodes, n)
	}
	return base, nodes
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func mustJoin(t *testing.T, n *node, member, session string) engine.State {
	t.Helper()
	st, err := n.e.Join(member, engine.JoinRequest{SessionID: session, DisplayName: "name-" + member})
	if err != nil {
		t.Fatalf("Join(%s, %s): %v", member, session, err)
	}
	return st
}

// broadcastVersions lists the versions of the snapshots n sent to the
// whole session.
func broadcastVersions(n *node, session string) []uint64 {
	var vs []uint64
	for _, c := range n.out.Events(protocol.EventSnapshot) {
		if c.Kind == enginetest.KindToSession && c.Session == session {
			vs = append(vs, c.Payload.(engine.State).Version)
		}
	}
	return vs
}

func contiguous(vs []uint64) bool {
	for i := 1; i < len(vs); i++ {
		if vs[i] != vs[i-1]+1 {
			return false
		}
	}
	return len(vs) > 0
}

// A command on either instance reaches the members on both, every change
// in version order, the same events in the same order; memberCount counts
// both instances' members.
func TestTwoInstancesDeliverInVersionOrder(t *testing.T) {
	_, n := cluster(t, multiConfig(), "A", "B")
	a, b := n[0], n[1]
	mustJoin(t, a, "m1", "s1")
	if st := mustJoin(t, b, "m2", "s1"); st.MemberCount != 2 || leaderOf(st) != "m1" {
		t.Fatalf("joining on the second instance: memberCount %d leader %q; want 2 and m1", st.MemberCount, leaderOf(st))
	}
	steps := []func() (engine.State, error){
		func() (engine.State, error) { return a.e.Play("m1", "s1", 0) },
		func() (engine.State, error) { return a.e.Seek("m1", "s1", 5000) },
		func() (engine.State, error) { return b.e.UpdateMessage("m2", "s1", "chorus") },
		func() (engine.State, error) { return a.e.SetTempo("m1", "s1", 140) },
		func() (engine.State, error) { return b.e.UpdateMessage("m2", "s1", "bridge") },
		func() (engine.State, error) { return a.e.Pause("m1", "s1") },
	}
	var last engine.State
	for i, f := range steps {
		last = ok(t)(f())
		if i == 0 {
			if !last.IsPlaying {
				t.Fatal("play did not play")
			}
		}
	}
	eventually(t, "both instances performed the last change", func() bool {
		va, vb := broadcastVersions(a, "s1"), broadcastVersions(b, "s1")
		return len(va) > 0 && va[len(va)-1] == last.Version && len(vb) > 0 && vb[len(vb)-1] == last.Version
	})
	va, vb := broadcastVersions(a, "s1"), broadcastVersions(b, "s1")
	if !contiguous(va) || va[0] != 1 || !contiguous(vb) || vb[0] > 2 {
		t.Fatalf("snapshot versions: A %v, B %v; want every version in order", va, vb)
	}
	// After m2 joined, both instances sent the same events in the same
	// order to the session.
	tail := func(n *node) []string {
		var names []string
		seen := false
		for _, c := range n.out.Calls() {
			seen = seen || c.Event == protocol.EventPlay
			if seen && c.Kind == enginetest.KindToSession {
				names = append(names, c.Event)
			}
		}
		return names
	}
	if ea, eb := tail(a), tail(b); len(ea) == 0 || !slices.Equal(ea, eb) {
		t.Fatalf("events after play: A %v, B %v", ea, eb)
	}
	for _, x := range []*node{a, b} {
		got, _ := x.e.Session("s1")
		if got.MemberCount != 2 || got.Version != last.Version || got.Message != "bridge" || got.Tempo != 140 || got.IsPlaying {
			t.Fatalf("an instance sees %+v", got)
		}
	}
}

// The leader on A drives the session; B's members follow it, B ticks its
// own members from the anchor A set, and a follower on B cannot drive it.
func TestLeaderOnOneInstanceFollowersOnAnother(t *testing.T) {
	_, n := cluster(t, multiConfig(), "A", "B")
	a, b := n[0], n[1]
	mustJoin(t, a, "lead", "s1")
	mustJoin(t, b, "f", "s1")
	ok(t)(a.e.Seek("lead", "s1", 1000))
	played := ok(t)(a.e.Play("lead", "s1", 0))
	eventually(t, "B plays", func() bool { st, _ := b.e.Session("s1"); return st.IsPlaying && st.Version == played.Version })
	wantCode(t, second(b.e.Seek("f", "s1", 9000)), protocol.CodeNotLeader)
	b.clk.Advance(500 * time.Millisecond)
	b.out.Reset()
	b.e.Tick(b.clk.Now())
	ticks := b.out.Events(protocol.EventScrollTick)
	if len(ticks) != 1 || ticks[0].Payload.(engine.Tick).PositionMs != 1500 {
		t.Fatalf("B's tick: %+v; want one at 1500 ms", ticks)
	}
	// A's members are not B's to tick: A ticks once on its own.
	if st, _ := a.e.Session("s1"); !st.IsPlaying {
		t.Fatal("A stopped playing")
	}
}

// A leader deposed on another instance cannot drive the session from an
// instance that has not heard of it yet: its command, evaluated on the
// stale copy, fails the compare-and-set, is evaluated again on the stored
// record, and is refused.
func TestStaleLeaderIsRefused(t *testing.T) {
	cfg := multiConfig()
	cfg.OpenLeadership = true // so m2 can take over from a sitting leader
	base, n := cluster(t, cfg, "A", "B")
	a, b := n[0], n[1]
	mustJoin(t, a, "m1", "s1")
	mustJoin(t, b, "m2", "s1")
	eventually(t, "A saw m2 join", func() bool { st, _ := a.e.Session("s1"); return st.MemberCount == 2 })
	a.st.off.Store(true)
	took := ok(t)(b.e.SetRole("m2", "s1", engine.RoleLeader))
	if st, _ := a.e.Session("s1"); leaderOf(st) != "m1" {
		t.Fatalf("A's copy should still be stale, leader %q", leaderOf(st))
	}
	wantCode(t, second(a.e.Seek("m1", "s1", 9000)), protocol.CodeNotLeader)
	got, _, _ := base.Load(t.Context(), "s1")
	if got.AnchorPositionMs == 9000 || got.LeaderID != "m2" || got.Version != took.Version {
		t.Fatalf("the deposed leader's seek landed: %+v", got)
	}
}

// Two members on two instances claim a vacant leadership at the same
// moment: exactly one gets it, the other is refused, every time.
func TestConcurrentClaimsExactlyOneWins(t *testing.T) {
	base, n := cluster(t, multiConfig(), "A", "B")
	a, b := n[0], n[1]
	for round := range 30 {
		id := fmt.Sprintf("claim%d", round)
		mustJoin(t, a, "lead"+id, id)
		mustJoin(t, a, "x"+id, id)
		mustJoin(t, b, "y"+id, id)
		ok(t)(a.e.SetRole("lead"+id, id, engine.RoleFollower)) // vacant now
		eventually(t, "B saw the vacancy", func() bool { st, _ := b.e.Session(id); return st.LeaderSocketID == nil })
		var wg sync.WaitGroup
		errs := make([]error, 2)
		start := make(chan struct{})
		for i, c := range []struct {
			n *node
			m string
		}{{a, "x" + id}, {b, "y" + id}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[i] = c.n.e.SetRole(c.m, id, engine.RoleLeader)
			}()
		}
		close(start)
		wg.Wait()
		wins := 0
		for _, err := range errs {
			if err == nil {
				wins++
			} else {
				wantCode(t, err, protocol.CodeNotLeader)
			}
		}
		rec, _, _ := base.Load(t.Context(), id)
		if wins != 1 || rec.LeaderID == "" {
			t.Fatalf("round %d: %d claims won (errors %v), stored leader %q", round, wins, errs, rec.LeaderID)
		}
	}
}

// Commands racing on both instances: every one lands exactly once (or is
// refused), each instance performs every change in version order, and
// both copies end equal to the stored record.
func TestConflictingCommandsConverge(t *testing.T) {
	base, n := cluster(t, multiConfig(), "A", "B")
	a, b := n[0], n[1]
	mustJoin(t, a, "lead", "s1")
	mustJoin(t, b, "f", "s1")
	ok(t)(a.e.Play("lead", "s1", 0))
	const each = 60
	var wg sync.WaitGroup
	var landed atomic.Int64
	for _, c := range []struct {
		n   *node
		m   string
		cmd func(e *engine.Engine, i int) (engine.State, error)
	}{
		{a, "lead", func(e *engine.Engine, i int) (engine.State, error) {
			if i%2 == 0 {
				return e.Seek("lead", "s1", float64(1000*i))
			}
			return e.SetTempo("lead", "s1", float64(60+i))
		}},
		{b, "f", func(e *engine.Engine, i int) (engine.State, error) {
			return e.UpdateMessage("f", "s1", fmt.Sprintf("msg %d", i))
		}},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := c.cmd(c.n.e, i); err != nil {
					t.Errorf("%s command %d: %v", c.m, i, err)
					return
				}
				landed.Add(1)
			}
		}()
	}
	wg.Wait()
	rec, _, _ := base.Load(t.Context(), "s1")
	if want := uint64(3 + landed.Load()); rec.Version != want { // 2 joins, play, then one version per command
		t.Fatalf("stored version %d after %d commands, want %d", rec.Version, landed.Load(), want)
	}
	eventually(t, "both copies at the stored version", func() bool {
		sa, _ := a.e.Session("s1")
		sb, _ := b.e.Session("s1")
		return sa.Version == rec.Version && sb.Version == rec.Version
	})
	sa, _ := a.e.Session("s1")
	sb, _ := b.e.Session("s1")
	if sa.Message != rec.Message || sb.Message != rec.Message || sa.Tempo != rec.Tempo || sb.Tempo != rec.Tempo {
		t.Fatalf("copies differ: A %q %v, B %q %v, stored %q %v", sa.Message, sa.Tempo, sb.Message, sb.Tempo, rec.Message, rec.Tempo)
	}
	for _, x := range []*node{a, b} {
		if vs := broadcastVersions(x, "s1"); !contiguous(vs) || vs[len(vs)-1] != rec.Version {
			t.Fatalf("an instance's snapshots skipped or reordered versions: %v", vs)
		}
	}
}

func member(st engine.State, id string) (engine.Member, bool) {
	i := slices.IndexFunc(st.Members, func(m engine.Member) bool { return m.SocketID == id })
	if i < 0 {
		return engine.Member{}, false
	}
	return st.Members[i], true
}

// An instance dies (its deliveries and timers stop): reaped by a survivor,
// its members are detached (still members, not counted), the leadership
// moves on after the grace period, and the members go after the recovery
// window, on the survivor's timers.
func TestDeadInstanceMembersAreDetachedThenRemoved(t *testing.T) {
	base, n := cluster(t, multiConfig(), "A", "B")
	a, b := n[0], n[1]
	mustJoin(t, b, "lead", "s1")
	mustJoin(t, a, "follow", "s1")
	ok(t)(b.e.Play("lead", "s1", 0))
	b.st.off.Store(true) // B is gone; its clock never moves again
	a.e.Reap("B", []string{"s1"})
	st, _ := a.e.Session("s1")
	if m, ok := member(st, "lead"); !ok || m.Connected || leaderOf(st) != "lead" || st.MemberCount != 1 || !st.IsPlaying {
		t.Fatalf("right after reaping: %+v", st)
	}
	a.clk.Advance(multiConfig().LeaderGrace)
	if st, _ := a.e.Session("s1"); leaderOf(st) != "follow" {
		t.Fatalf("after the grace period the leader is %q, want follow", leaderOf(st))
	}
	a.clk.Advance(multiConfig().RecoveryWindow)
	st, _ = a.e.Session("s1")
	if _, ok := member(st, "lead"); ok || st.MemberCount != 1 || len(st.Members) != 1 {
		t.Fatalf("after the recovery window: %+v", st.Members)
	}
	if rec, _, _ := base.Load(t.Context(), "s1"); len(rec.Members) != 1 || rec.Members[0].SocketID != "follow" {
		t.Fatalf("stored members %+v", rec.Members)
	}
}

// A leader whose instance died resumes on another instance within the
// grace period: it keeps the leadership, now stamped on its new instance,
// and a later reaping of the dead instance does not detach it again.
func TestLeaderRecoversOnAnotherInstance(t *testing.T) {
	base, n := cluster(t, multiConfig(), "A", "B")
	a, b := n[0], n[1]
	mustJoin(t, b, "lead", "s1")
	mustJoin(t, a, "follow", "s1")
	b.st.off.Store(true)
	a.e.Attach("lead", "s1") // the socket recovered on A
	if st, _ := a.e.Session("s1"); leaderOf(st) != "lead" {
		t.Fatalf("after recovering on A the leader is %q", leaderOf(st))
	}
	ok(t)(a.e.Seek("lead", "s1", 1234))
	a.e.Reap("B", []string{"s1"})
	a.clk.Advance(multiConfig().LeaderGrace + time.Second)
	st, _ := a.e.Session("s1")
	rec, _, _ := base.Load(t.Context(), "s1")
	i := slices.IndexFunc(rec.Members, func(m store.Member) bool { return m.SocketID == "lead" })
	if leaderOf(st) != "lead" || i < 0 || !rec.Members[i].Connected || rec.Members[i].Instance != "A" {
		t.Fatalf("leader %q, stored members %+v", leaderOf(st), rec.Members)
	}
}
