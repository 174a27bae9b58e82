package redisstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bandsync/bandsync/internal/redisstore"
	"github.com/bandsync/bandsync/internal/store"
)

func rec(id string, version, term uint64) store.SessionRecord {
	return store.SessionRecord{SessionID: id, Tempo: 120, LeaderID: "a", LeaderTerm: term, Version: version,
		Members: []store.Member{{SocketID: "a", DisplayName: "Ann", Role: "leader", JoinedAt: 1, Connected: true, Instance: "i1"}}}
}

func snapshotOp(v uint64) []store.Op {
	return []store.Op{{Kind: store.OpBroadcast, Event: "snapshot", Payload: json.RawMessage(`{"version":` + itoa(v) + `}`)}}
}

func itoa(v uint64) string { b, _ := json.Marshal(v); return string(b) }

// The Store contract of package store holds: Save refuses anything not
// newer, Load returns what was saved, Delete removes it.
func TestStoreContract(t *testing.T) {
	ctx := context.Background()
	rs := open(t, sharedURL(t), prefix(t), "i1")
	if _, ok, err := rs.Load(ctx, "s1"); ok || err != nil {
		t.Fatalf("Load of an absent session = %v, %v", ok, err)
	}
	if err := rs.Save(ctx, rec("s1", 3, 1)); err != nil {
		t.Fatal(err)
	}
	for _, v := range []uint64{3, 2} {
		if err := rs.Save(ctx, rec("s1", v, 1)); !errors.Is(err, store.ErrConflict) {
			t.Errorf("Save of version %d over 3: %v, want ErrConflict", v, err)
		}
	}
	got := stored(t, rs, "s1")
	if got.Version != 3 || got.Members[0].Instance != "i1" || got.Members[0].DisplayName != "Ann" {
		t.Fatalf("stored %+v", got)
	}
	if err := rs.Delete(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := rs.Load(ctx, "s1"); ok {
		t.Fatal("record still there after Delete")
	}
	if rs.Mode() != "redis" {
		t.Fatalf("Mode = %q", rs.Mode())
	}
}

// Commit is an exact compare-and-set on (version, leader term): a writer
// that read an older version, or evaluated its command under a deposed
// leader's term, never lands, and gets the stored record to retry with.
func TestCommitCompareAndSet(t *testing.T) {
	ctx := context.Background()
	rs := open(t, sharedURL(t), prefix(t), "i1")
	if _, err := rs.Commit(ctx, rec("s1", 1, 1), 0, 0, snapshotOp(1)); err != nil {
		t.Fatal(err)
	}
	res, err := rs.Commit(ctx, rec("s1", 1, 1), 0, 0, snapshotOp(1))
	if !errors.Is(err, store.ErrConflict) || !res.Found || res.Current.Version != 1 {
		t.Fatalf("second commit from version 0: res %+v err %v; want ErrConflict with the stored version 1", res, err)
	}
	// Leadership moved on (term 2) at version 2.
	if _, err := rs.Commit(ctx, rec("s1", 2, 2), 1, 1, snapshotOp(2)); err != nil {
		t.Fatal(err)
	}
	// A command evaluated with the right version but the old term.
	if _, err := rs.Commit(ctx, rec("s1", 3, 1), 2, 1, snapshotOp(3)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("commit under a stale leader term: %v, want ErrConflict", err)
	}
	if got := stored(t, rs, "s1"); got.Version != 2 || got.LeaderTerm != 2 {
		t.Fatalf("a refused commit changed the record: %+v", got)
	}
}

// Many writers racing on one session, each reading, changing and
// committing with retries: no update is lost and every version is taken
// exactly once.
func TestCommitUnderContentionLosesNothing(t *testing.T) {
	ctx := context.Background()
	rs := open(t, sharedURL(t), prefix(t), "i1")
	const writers, each = 8, 25
	var conflicts atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				for {
					cur, found, err := rs.Load(ctx, "s1")
					if err != nil {
						t.Error(err)
						return
					}
					if !found {
						cur = rec("s1", 0, 0)
					}
					next := cur.Clone()
					next.Version++
					next.Message += string(rune('a' + w))
					_, err = rs.Commit(ctx, next, cur.Version, cur.LeaderTerm, snapshotOp(next.Version))
					if err == nil {
						break
					}
					if !errors.Is(err, store.ErrConflict) {
						t.Error(err)
						return
					}
					conflicts.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	got := stored(t, rs, "s1")
	if got.Version != writers*each || len(got.Message) != writers*each {
		t.Fatalf("after %d commits: version %d, %d updates kept; want both %d", writers*each, got.Version, len(got.Message), writers*each)
	}
	t.Logf("%d conflicts retried", conflicts.Load())
	// The log holds one snapshot per version, in version order.
	batches, complete, err := rs.Since(ctx, "s1", "0-0")
	if err != nil || !complete || len(batches) != writers*each {
		t.Fatalf("log: %d batches, complete %v, err %v", len(batches), complete, err)
	}
	for i, b := range batches {
		if b.Version != uint64(i+1) {
			t.Fatalf("log entry %d has version %d", i, b.Version)
		}
	}
}

// What a follower receives is what the log holds, in the same order, with
// the log ids, and a batch's Prev is the previous batch's Last.
func TestPublishedBatchesMatchTheLog(t *testing.T) {
	ctx := context.Background()
	url, pfx := sharedURL(t), prefix(t)
	for _, sharded := range []bool{false, true} {
		name := "pubsub"
		if sharded {
			name = "sharded"
		}
		t.Run(name, func(t *testing.T) {
			sh := sharded
			w := open(t, url, pfx, "w-"+name, func(o *redisstore.Options) { o.ShardedPubSub = &sh })
			f := open(t, url, pfx, "f-"+name, func(o *redisstore.Options) { o.ShardedPubSub = &sh })
			l := &listener{}
			f.Listen(l)
			id := "s-" + name
			_, found, cursor, err := f.Follow(ctx, id)
			if err != nil || found || cursor != "0-0" {
				t.Fatalf("Follow = found %v cursor %q err %v", found, cursor, err)
			}
			for v := uint64(1); v <= 5; v++ {
				ops := append(snapshotOp(v), store.Op{Kind: store.OpToMember, Member: "m", Event: "snapshot", Payload: json.RawMessage(`{}`)},
					store.Op{Kind: store.OpJoin, Member: "m"})
				term := uint64(1)
				if v == 1 {
					term = 0 // no record yet
				}
				if _, err := w.Commit(ctx, rec(id, v, 1), v-1, term, ops); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, 3*time.Second, "5 batches delivered", func() bool { return l.count(id) == 5 })
			got := l.batches(id)
			logged, complete, err := w.Since(ctx, id, "0-0")
			if err != nil || !complete || len(logged) != 5 {
				t.Fatalf("Since: %d batches, %v, %v", len(logged), complete, err)
			}
			prev := "0-0"
			for i, b := range got {
				if b.Version != uint64(i+1) || b.Prev != prev || b.Record == nil || b.Record.Version != b.Version {
					t.Fatalf("batch %d: version %d prev %q (want %q), record %v", i, b.Version, b.Prev, prev, b.Record)
				}
				if len(b.Ops) != 3 || b.Ops[2].Kind != store.OpJoin || b.Ops[1].Member != "m" {
					t.Fatalf("batch %d ops %+v", i, b.Ops)
				}
				for j, op := range b.Ops {
					if op.ID != logged[i].Ops[j].ID || op.Kind != logged[i].Ops[j].Kind || string(op.Payload) != string(logged[i].Ops[j].Payload) {
						t.Fatalf("batch %d op %d published %+v, logged %+v", i, j, op, logged[i].Ops[j])
					}
				}
				if b.Last != b.Ops[2].ID {
					t.Fatalf("batch %d Last %q, last op id %q", i, b.Last, b.Ops[2].ID)
				}
				prev = b.Last
			}
			// Since from the middle returns exactly the rest.
			rest, complete, err := w.Since(ctx, id, got[2].Last)
			if err != nil || !complete || len(rest) != 2 || rest[0].Version != 4 {
				t.Fatalf("Since(batch 3) = %d batches from version %v, complete %v, err %v", len(rest), rest, complete, err)
			}
		})
	}
}

// A session's keys take SESSION_TTL and every change renews it, so an idle
// session disappears from Redis on its own.
func TestIdleSessionsExpire(t *testing.T) {
	ctx := context.Background()
	url, pfx := sharedURL(t), prefix(t)
	rs := open(t, url, pfx, "i1", func(o *redisstore.Options) { o.SessionTTL = 800 * time.Millisecond })
	if _, err := rs.Commit(ctx, rec("s1", 1, 1), 0, 0, snapshotOp(1)); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(mustParse(t, url))
	defer c.Close()
	for _, k := range []string{pfx + "{s1}:state", pfx + "{s1}:log"} {
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil || ttl <= 0 || ttl > 800*time.Millisecond {
			t.Fatalf("PTTL %s = %v, %v; want (0, 800ms]", k, ttl, err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := rs.Commit(ctx, rec("s1", 2, 1), 1, 1, snapshotOp(2)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // 1 s after creation, 0.5 s after the change
	if _, ok, _ := rs.Load(ctx, "s1"); !ok {
		t.Fatal("a change did not renew the session's TTL")
	}
	eventually(t, 2*time.Second, "idle session expired", func() bool {
		_, ok, _ := rs.Load(ctx, "s1")
		return !ok
	})
	if n, _ := c.Exists(ctx, pfx+"{s1}:log").Result(); n != 0 {
		t.Fatal("the session's log outlived it")
	}
}

func mustParse(t *testing.T, url string) *redis.Options {
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

type listener struct {
	mu     sync.Mutex
	got    map[string][]store.Batch
	resync atomic.Int64
}

func (l *listener) Deliver(id string, b store.Batch) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.got == nil {
		l.got = map[string][]store.Batch{}
	}
	l.got[id] = append(l.got[id], b)
}

func (l *listener) Resync() { l.resync.Add(1) }

func (l *listener) count(id string) int { return len(l.batches(id)) }

func (l *listener) batches(id string) []store.Batch {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]store.Batch(nil), l.got[id]...)
}
