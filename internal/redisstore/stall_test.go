package redisstore_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/redisstore"
	"github.com/bandsync/bandsync/internal/store"
)

// stallingStore is a real Redis backend whose Commit waits at a gate while
// stall is set, as a Redis that answers late would.
type stallingStore struct {
	*redisstore.Redis
	stall   atomic.Bool
	entered chan struct{} // one value per stalled Commit, when it starts waiting
	gate    chan struct{} // closed to let stalled Commits through
}

func (s *stallingStore) Commit(ctx context.Context, r store.SessionRecord, prev, term uint64, ops []store.Op) (store.Result, error) {
	if s.stall.Load() {
		s.entered <- struct{}{}
		<-s.gate
	}
	return s.Redis.Commit(ctx, r, prev, term, ops)
}

// tickCounter counts the scroll_ticks the engine sends per session.
type tickCounter struct {
	*recorder
	ticks map[string]*atomic.Int64
}

func (c tickCounter) ToSessionVolatile(session, _ string, _ any) { c.ticks[session].Add(1) }

// A command whose commit waits on a slow store must not hold up ticks or
// snapshot readers: not its own session's, not another's.
func TestSlowCommitDelaysNoTickAndNoReader(t *testing.T) {
	st := &stallingStore{Redis: open(t, sharedURL(t), prefix(t), "A"), entered: make(chan struct{}, 1), gate: make(chan struct{})}
	out := tickCounter{recorder: newRecorder(), ticks: map[string]*atomic.Int64{"s1": {}, "s2": {}}}
	eng := engine.New(engineConfig(), nil, out, st, nil)
	for _, id := range []string{"s1", "s2"} {
		if _, err := eng.Join("lead-"+id, engine.JoinRequest{SessionID: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := eng.Play("lead-"+id, id, 0); err != nil {
			t.Fatal(err)
		}
	}

	st.stall.Store(true)
	seekDone := make(chan error, 1)
	go func() {
		_, err := eng.Seek("lead-s1", "s1", 4000)
		seekDone <- err
	}()
	<-st.entered // the seek now waits on the store, as on a Redis answering late
	released := false
	release := func() {
		if !released {
			released = true
			st.stall.Store(false)
			close(st.gate)
		}
	}
	defer release()

	// While it waits, both sessions tick and can be read. The generous
	// limit only turns a wait on the command into a failure instead of a
	// hang; nothing here measures speed.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 5 {
			eng.Tick(time.Now())
		}
		if snap, ok := eng.Session("s1"); !ok || !snap.IsPlaying {
			t.Errorf("s1 unreadable while its command waits on the store: %+v", snap)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ticks or a snapshot read waited on a command stalled in the store")
	}
	for _, id := range []string{"s1", "s2"} {
		if n := out.ticks[id].Load(); n != 5 {
			t.Fatalf("%s: %d ticks while s1's command waited, want 5", id, n)
		}
	}
	release()
	if err := <-seekDone; err != nil {
		t.Fatalf("the stalled seek failed once the store answered: %v", err)
	}
	eventually(t, 3*time.Second, "the seek applied", func() bool {
		snap, _ := eng.Session("s1")
		return snap.PositionMs >= 4000
	})
}
