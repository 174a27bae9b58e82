//go:build chaos

// The long fault scenarios: `make chaos` runs them (they are built only
// with the chaos tag, so `make test` neither runs nor skips them).

package redisstore_test

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/redisstore/redistest"
)

// chaosRounds is CHAOS_ROUNDS (default 6).
func chaosRounds(t *testing.T) int {
	n := 6
	if v := os.Getenv("CHAOS_ROUNDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("CHAOS_ROUNDS=%q: want a whole number >= 1", v)
		}
	}
	return n
}

// Round after round during one long play, the master serving the session
// is SIGKILLed and restarted, or the session's slot moves: every time the
// last acknowledged seek holds, the next seek reaches both instances
// within 5 s, ticks go on and the instances agree.
func TestChaosClusterRepeatedFailovers(t *testing.T) {
	c := redistest.StartCluster(t)
	bd := startBand(t, c.URL())
	key := "{" + bd.id + "}"
	start := time.Now()
	for round := 1; round <= chaosRounds(t); round++ {
		from, err := c.MasterOf(key)
		if err != nil {
			t.Fatal(err)
		}
		var lost *lostTempo
		if round%3 != 0 {
			lt := bd.loseTempo(c.CutReplication, from, float64(120+round))
			lost = &lt
		}
		sk := bd.seekDuringFault()
		at := time.Now()
		what := "slot move"
		if round%3 == 0 {
			if _, err := c.MoveSlot(key); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
		} else {
			what = "master SIGKILL, a tempo change lost by Redis"
			if err := c.Kill(from); err != nil {
				t.Fatal(err)
			}
			if _, err := c.WaitFailover(key, from, 15*time.Second); err != nil {
				t.Fatal(err)
			}
			if err := c.HealReplication(lost.replica); err != nil {
				t.Fatal(err)
			}
		}
		over := time.Now()
		sk.end(t)
		agreed := bd.agree(5 * time.Second)
		sk.kept(t, agreed)
		if lost != nil {
			lost.kept(bd, agreed)
		}
		took := bd.nextSeekWithin(over)
		t.Logf("round %d (%s of %s): fault over after %v, next seek everywhere %v after that",
			round, what, from, over.Sub(at).Round(time.Millisecond), took.Round(time.Millisecond))
		if lost != nil {
			if err := c.Restart(from); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.WaitHealthy(20 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	bd.agree(5 * time.Second)
	bd.checkTicks(start)
	bd.noDisconnects()
}

// The same with Sentinel: each round kills the current master and
// restarts it once the sentinels promoted the replica (it comes back as
// the new master's replica).
func TestChaosSentinelRepeatedFailovers(t *testing.T) {
	s := redistest.StartSentinel(t)
	bd := startBand(t, s.URL())
	start := time.Now()
	for round := 1; round <= chaosRounds(t); round++ {
		old, err := s.Master()
		if err != nil {
			t.Fatal(err)
		}
		lost := bd.loseTempo(s.CutReplication, old, float64(120+round))
		sk := bd.seekDuringFault()
		at := time.Now()
		if err := s.Kill(old); err != nil {
			t.Fatal(err)
		}
		if _, err := s.WaitFailover(old, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		over := time.Now()
		if err := s.HealReplication(lost.replica); err != nil {
			t.Fatal(err)
		}
		sk.end(t)
		agreed := bd.agree(5 * time.Second)
		sk.kept(t, agreed)
		lost.kept(bd, agreed)
		took := bd.nextSeekWithin(over)
		t.Logf("round %d (master SIGKILL of %s, a tempo change lost by Redis): failover after %v, next seek everywhere %v after that",
			round, old, over.Sub(at).Round(time.Millisecond), took.Round(time.Millisecond))
		if err := s.Restart(old); err != nil {
			t.Fatal(err)
		}
		if err := s.WaitHealthy(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	bd.agree(5 * time.Second)
	bd.checkTicks(start)
	bd.noDisconnects()
}
