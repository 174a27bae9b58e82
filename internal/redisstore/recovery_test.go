package redisstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bandsync/bandsync/internal/redisstore"
	"github.com/bandsync/bandsync/internal/socketio"
	"github.com/bandsync/bandsync/internal/store"
	"github.com/bandsync/bandsync/internal/store/storetest"
)

func sessionRoom(room string) (string, bool) { return strings.CutPrefix(room, "session:") }

// A live socket's record is in Redis before the socket drops (a killed
// instance writes nothing), any instance can take it exactly once, and a
// late disconnect on the old instance does not overwrite a record another
// instance wrote since.
func TestRecoveryRecordsAreWrittenWhileLive(t *testing.T) {
	ctx := context.Background()
	url, pfx := sharedURL(t), prefix(t)
	ra, rb := open(t, url, pfx, "A"), open(t, url, pfx, "B")
	recA := ra.Recovery(10*time.Second, sessionRoom)
	recB := rb.Recovery(10*time.Second, sessionRoom)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go recA.Run(rctx)
	go recB.Run(rctx)

	recA.Track("pid1", socketio.Saved{SID: "sock1", Rooms: []string{"sock1", "session:s1"}})
	c := redis.NewClient(mustParse(t, url))
	defer c.Close()
	eventually(t, 2*time.Second, "live record written", func() bool {
		n, _ := c.Exists(ctx, pfx+"pid:pid1").Result()
		return n == 1
	})
	if ttl, _ := c.PTTL(ctx, pfx+"pid:pid1").Result(); ttl <= 0 || ttl > 10*time.Second {
		t.Fatalf("live record TTL %v, want (0, 10s]", ttl)
	}

	// While A's socket is live, its pid presented on B is refused and
	// the record stays A's.
	if _, ok, err := recB.Take(ctx, "pid1"); ok || err != nil {
		t.Fatalf("Take on B of a socket live on A = ok %v, err %v; want refused", ok, err)
	}
	if v, _ := c.Get(ctx, pfx+"pid:pid1").Result(); !strings.HasPrefix(v, "A\n1\n") {
		t.Fatalf("a refused take changed the record: %q", v)
	}
	// The socket drops on A; the client comes back on B.
	if err := recA.Save(ctx, "pid1", socketio.Saved{SID: "sock1", Rooms: []string{"sock1", "session:s1"}}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := recB.Take(ctx, "pid1")
	if err != nil || !ok || got.SID != "sock1" || len(got.Rooms) != 2 || got.Rooms[1] != "session:s1" {
		t.Fatalf("Take on B = %+v, %v, %v", got, ok, err)
	}
	if _, ok, _ := recA.Take(ctx, "pid1"); ok {
		t.Fatal("a record was taken twice")
	}
	// B now tracks it; A's save comes again, late.
	recB.Track("pid1", socketio.Saved{SID: "sock1", Rooms: []string{"sock1", "session:s1"}})
	eventually(t, 2*time.Second, "B's record written", func() bool {
		v, _ := c.Get(ctx, pfx+"pid:pid1").Result()
		return strings.HasPrefix(v, "B\n")
	})
	if err := recA.Save(ctx, "pid1", socketio.Saved{SID: "sock1", Rooms: []string{"sock1"}}); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get(ctx, pfx+"pid:pid1").Result(); !strings.HasPrefix(v, "B\n") {
		t.Fatalf("A's late save overwrote B's record: %q", v)
	}
	// A deliberate disconnect forgets the record.
	recB.Forget("pid1")
	eventually(t, 2*time.Second, "record deleted", func() bool {
		n, _ := c.Exists(ctx, pfx+"pid:pid1").Result()
		return n == 0
	})
}

// The pid of a socket live on an instance that was killed is honoured on
// another at once, without waiting for the dead instance's presence key to
// expire: its clients reconnect within a second.
func TestRecoveryOfALiveSocketWhoseInstanceDied(t *testing.T) {
	ctx := context.Background()
	url, pfx := sharedURL(t), prefix(t)
	ra, rb := open(t, url, pfx, "A", func(o *redisstore.Options) { o.Heartbeat = time.Minute }), open(t, url, pfx, "B")
	recA := ra.Recovery(10*time.Second, sessionRoom)
	recB := rb.Recovery(10*time.Second, sessionRoom)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go recA.Run(rctx)
	recA.Track("pid2", socketio.Saved{SID: "sock2", Rooms: []string{"sock2"}})
	c := redis.NewClient(mustParse(t, url))
	defer c.Close()
	eventually(t, 2*time.Second, "live record written", func() bool {
		n, _ := c.Exists(ctx, pfx+"pid:pid2").Result()
		return n == 1
	})
	if _, ok, _ := recB.Take(ctx, "pid2"); ok {
		t.Fatal("a socket live on a running instance was taken over")
	}
	cancel()
	// Killed: its connections close with it (its presence key would live
	// three minutes here).
	if err := ra.Client().Close(); err != nil {
		t.Fatal(err)
	}
	var got socketio.Saved
	eventually(t, 2*time.Second, "record taken on B", func() bool {
		var ok bool
		got, ok, _ = recB.Take(ctx, "pid2")
		return ok
	})
	if got.SID != "sock2" {
		t.Fatalf("took %+v, want sock2", got)
	}
}

// Since replays the session's events after the client's offset (its log
// id) and the events addressed to that socket only; an offset that is no
// longer in the log cannot be recovered without a gap.
func TestRecoverySinceReadsTheSessionLog(t *testing.T) {
	ctx := context.Background()
	url, pfx := sharedURL(t), prefix(t)
	rs := open(t, url, pfx, "A", func(o *redisstore.Options) { o.LogMaxLen = 10 })
	rec := rs.Recovery(10*time.Second, sessionRoom)
	var followed []string
	rec.SetFollow(func(id string) error { followed = append(followed, id); return nil })
	var ids []string
	for v := uint64(1); v <= 3; v++ {
		ops := []store.Op{
			{Kind: store.OpBroadcast, Event: "snapshot", Payload: []byte(`{"version":` + itoa(v) + `}`)},
			{Kind: store.OpToMember, Member: "me", Event: "snapshot", Payload: []byte(`{"to":"me"}`)},
			{Kind: store.OpToMember, Member: "other", Event: "snapshot", Payload: []byte(`{"to":"other"}`)},
			{Kind: store.OpJoin, Member: "me"},
		}
		term := uint64(1)
		if v == 1 {
			term = 0
		}
		res, err := rs.Commit(ctx, recOf("s1", v), v-1, term, ops)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Batch.Ops[0].ID)
	}
	off, ok := rec.ParseOffset(ids[0])
	if !ok {
		t.Fatalf("ParseOffset(%q) failed", ids[0])
	}
	got, ok, err := rec.Since(ctx, off, []string{"me", "session:s1"})
	if err != nil || !ok {
		t.Fatalf("Since = ok %v, err %v", ok, err)
	}
	var packets []string
	for _, r := range got {
		packets = append(packets, string(r.Packet))
	}
	want := []string{
		`42["snapshot",{"to":"me"},"` + logID(t, rs, 1, 1) + `"]`,
		`42["snapshot",{"version":2},"` + ids[1] + `"]`,
		`42["snapshot",{"to":"me"},"` + logID(t, rs, 2, 1) + `"]`,
		`42["snapshot",{"version":3},"` + ids[2] + `"]`,
		`42["snapshot",{"to":"me"},"` + logID(t, rs, 3, 1) + `"]`,
	}
	if strings.Join(packets, "\n") != strings.Join(want, "\n") {
		t.Fatalf("replay:\n%s\nwant:\n%s", strings.Join(packets, "\n"), strings.Join(want, "\n"))
	}
	if len(followed) != 1 || followed[0] != "s1" {
		t.Fatalf("the session was not followed before the replay: %v", followed)
	}
	// Enough changes to trim the first entries out of the capped log.
	for v := uint64(4); v <= 300; v++ { // MAXLEN ~ trims whole nodes of 100 entries
		if _, err := rs.Commit(ctx, recOf("s1", v), v-1, 1, []store.Op{{Kind: store.OpBroadcast, Event: "snapshot", Payload: []byte(`{}`)}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, err := rec.Since(ctx, off, []string{"me", "session:s1"}); ok || err != nil {
		t.Fatalf("Since from a trimmed offset = ok %v, err %v; want not recoverable", ok, err)
	}
}

func recOf(id string, v uint64) store.SessionRecord { return storetest.Rec(id, v, 1) }

// logID returns the id of the op-th operation of version v in the log.
func logID(t *testing.T, rs interface {
	Since(context.Context, string, string) ([]store.Batch, bool, error)
}, v uint64, op int) string {
	t.Helper()
	bs, _, err := rs.Since(context.Background(), "s1", "0-0")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if b.Version == v {
			return b.Ops[op].ID
		}
	}
	t.Fatalf("no version %d in the log", v)
	return ""
}
