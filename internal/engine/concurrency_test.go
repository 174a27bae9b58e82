package engine_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/engine/enginetest"
	"github.com/bandsync/bandsync/internal/protocol"
)

// Members hammer two sessions from many goroutines while ticks, sweeps and
// timers run. Under -race this checks the locking; the assertions check
// that every session's broadcasts went out in the order it changed.
func TestConcurrentUseKeepsPerSessionOrder(t *testing.T) {
	f := newFixture(t, func(c *engine.Config) {
		c.LeaderGrace = 50 * time.Millisecond
		c.RecoveryWindow = 200 * time.Millisecond
	})
	sessions := []string{"s1", "s2"}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("m%d", w)
			for i := range 200 {
				sid := sessions[(w+i/50)%2]
				role := ""
				if i%7 == 0 {
					role = engine.RoleLeader
				}
				_, _ = f.e.Join(id, engine.JoinRequest{SessionID: sid, Role: role})
				_, _ = f.e.Play(id, sid, float64(i%3))
				_, _ = f.e.SetTempo(id, sid, float64(60+i%100))
				_, _ = f.e.Seek(id, sid, float64(i*10))
				_, _ = f.e.UpdateMessage(id, sid, fmt.Sprintf("%s %d", id, i))
				_, _ = f.e.SyncRequest(id, sid)
				switch i % 10 {
				case 3:
					f.e.Detach(id)
				case 4:
					f.e.Attach(id)
				case 6:
					_, _ = f.e.Pause(id, sid)
				case 8:
					_, _ = f.e.SetRole(id, sid, engine.RoleFollower)
				case 9:
					f.e.Remove(id)
				}
			}
		}()
	}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			f.clk.Advance(7 * time.Millisecond)
			f.e.Tick(f.clk.Now())
			f.e.Sweep()
			_ = f.e.Stats()
			_, _ = f.e.Session("s1")
		}
	}()
	wg.Wait()
	close(stop)
	bg.Wait()

	last := map[string]uint64{}
	for _, c := range f.out.Calls() {
		if c.Kind != enginetest.KindToSession || c.Event != protocol.EventSnapshot {
			continue
		}
		v := c.Payload.(engine.State).Version
		if v <= last[c.Session] {
			t.Fatalf("session %s broadcast version %d after %d", c.Session, v, last[c.Session])
		}
		last[c.Session] = v
	}
	for _, sid := range sessions {
		st, ok := f.e.Session(sid)
		if !ok {
			continue
		}
		if st.Version != last[sid] {
			t.Fatalf("%s: final version %d, last broadcast %d", sid, st.Version, last[sid])
		}
		leaders := 0
		for _, m := range st.Members {
			if m.Role == engine.RoleLeader {
				leaders++
				if leaderOf(st) != m.SocketID {
					t.Fatalf("%s: member %s has role leader but leader is %q", sid, m.SocketID, leaderOf(st))
				}
			}
		}
		if leaders > 1 || (leaders == 0) != (leaderOf(st) == "") {
			t.Fatalf("%s: %d members with role leader, leaderSocketId %q", sid, leaders, leaderOf(st))
		}
		rec, _, _ := f.st.Load(t.Context(), sid)
		if rec.Version != st.Version {
			t.Fatalf("%s: stored version %d, live %d", sid, rec.Version, st.Version)
		}
	}
}
