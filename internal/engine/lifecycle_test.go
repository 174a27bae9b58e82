package engine_test

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/engine/enginetest"
	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/store"
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

func TestIdleSessionsExpire(t *testing.T) {
	f := newFixture(t) // IdleTimeout 10 min
	f.join("a", "empty")
	f.join("b", "detached")
	f.join("c", "busy")
	ok(t)(f.e.Play("b", "detached", 0))
	f.e.Remove("a")
	f.e.Detach("b")
	// A session nobody is in (not even a dropped member) is reclaimed
	// after 2 minutes, not IdleTimeout (10 here): squatted sessions must
	// not hold MaxSessions for an hour.
	f.clk.Advance(2*time.Minute - time.Millisecond)
	if n := f.e.SweepIdle(f.clk.Now()); n != 0 {
		t.Fatalf("swept %d sessions before the empty-session timeout", n)
	}
	// b was removed when its 2-minute recovery window ran out; that was
	// the detached session's last change, so it expires 2 minutes later.
	f.clk.Advance(time.Millisecond)
	if n := f.e.SweepIdle(f.clk.Now()); n != 1 {
		t.Fatalf("swept %d, want 1 (empty)", n)
	}
	if _, ok := f.e.Session("empty"); ok {
		t.Fatal("empty session still exists")
	}
	if _, found, _ := f.st.Load(t.Context(), "empty"); found {
		t.Fatal("empty session still in the store")
	}
	f.clk.Advance(2 * time.Minute)
	if n := f.e.SweepIdle(f.clk.Now()); n != 1 {
		t.Fatalf("swept %d, want 1 (detached)", n)
	}
	if s := f.e.Stats(); s.Sessions != 1 || s.PlayingSessions != 0 || s.Members != 1 {
		t.Fatalf("after sweep Stats = %+v, want only busy", s)
	}
	f.clk.Advance(24 * time.Hour)
	if n := f.e.SweepIdle(f.clk.Now()); n != 0 {
		t.Fatalf("a session with a connected member expired")
	}
	// The id is free again: a new session starts at version 1.
	if st := f.join("z", "empty"); st.Version != 1 || st.MemberCount != 1 {
		t.Fatalf("re-created session: version %d members %d", st.Version, st.MemberCount)
	}
}

func TestSessionRestoredFromStore(t *testing.T) {
	f := newFixture(t)
	err := f.st.Save(t.Context(), store.SessionRecord{
		SessionID: "old", Message: "setlist", Tempo: 96, IsPlaying: true,
		AnchorPositionMs: 1000, AnchorEpochMs: ms(t0) - 500, StartsAt: ms(t0) - 500,
		LeaderID: "gone", LeaderTerm: 7, Version: 41, Settings: store.Settings{MaxMembers: 8},
		Members: []store.Member{{SocketID: "gone", Role: engine.RoleLeader, Connected: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := f.join("a", "old")
	// a leads by default, and the status text says so.
	if st.Version != 42 || st.Message != "name-a is leading" || st.Tempo != 96 || !st.IsPlaying || st.PositionMs != 1500 {
		t.Fatalf("restored: %+v", st)
	}
	if st.MemberCount != 1 || leaderOf(st) != "a" || st.LeaderTerm != 9 || st.Settings.MaxMembers != 8 {
		t.Fatalf("restored membership: members %d leader %q term %d", st.MemberCount, leaderOf(st), st.LeaderTerm)
	}
}

// failingStore refuses saves while failing is set.
type failingStore struct {
	*store.Memory
	mu      sync.Mutex
	failing bool
	saves   int
}

func (s *failingStore) Save(ctx context.Context, r store.SessionRecord) error {
	s.mu.Lock()
	s.saves++
	fail := s.failing
	s.mu.Unlock()
	if fail {
		return errors.New("store down")
	}
	return s.Memory.Save(ctx, r)
}

func TestStoreErrorsAreNotFatalAndFlushAllCatchesUp(t *testing.T) {
	fs := &failingStore{Memory: store.NewMemory(), failing: true}
	clk := enginetest.NewFakeClock(t0)
	e := engine.New(engine.Config{}, clk, enginetest.NewRecorder(), fs, nil)
	if _, err := e.Join("a", engine.JoinRequest{SessionID: "s1"}); err != nil {
		t.Fatalf("Join with a failing store: %v", err)
	}
	if _, err := e.SetTempo("a", "s1", 100); err != nil {
		t.Fatalf("SetTempo with a failing store: %v", err)
	}
	fs.mu.Lock()
	fs.failing = false
	fs.mu.Unlock()
	if err := e.FlushAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	rec, found, _ := fs.Load(t.Context(), "s1")
	if !found || rec.Version != 2 || rec.Tempo != 100 {
		t.Fatalf("after FlushAll stored %+v (found %v), want version 2 tempo 100", rec, found)
	}
	fs.mu.Lock()
	before := fs.saves
	fs.mu.Unlock()
	if err := e.FlushAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	if fs.saves != before {
		t.Fatal("FlushAll re-saved a session that was already stored")
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
