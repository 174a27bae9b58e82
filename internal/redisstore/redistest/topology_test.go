package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Cluster helper gives a working 3+3 cluster whose slot owner can be
// killed and replaced by its replica.
func TestClusterFailsOver(t *testing.T) {
	c := StartCluster(t)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cc.Set(ctx, "{k}", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	old, err := c.MasterOf("{k}")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(old); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	now, err := c.WaitFailover("{k}", old, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("master %s replaced by %s in %v", old, now, time.Since(t0).Round(time.Millisecond))
	// go-redis routes by its cached slot map: it has to be told to
	// reload it (a dead master answers no MOVED).
	cc.ReloadState(ctx)
	var got string
	for range 50 {
		if got, err = cc.Get(ctx, "{k}").Result(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got != "v" {
		t.Fatalf("after the failover GET = %q, %v", got, err)
	}
}

// The Sentinel helper gives a master that the sentinels replace when it
// is killed.
func TestSentinelFailsOver(t *testing.T) {
	s := StartSentinel(t)
	old, err := s.Master()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Kill(old); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	now, err := s.WaitFailover(old, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("master %s replaced by %s in %v", old, now, time.Since(t0).Round(time.Millisecond))
}
