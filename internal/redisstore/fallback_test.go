package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/metrics"
	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/redisstore"
	"github.com/bandsync/bandsync/internal/redisstore/redistest"
)

// Redis dies mid-session and comes back empty. Meanwhile a band whose
// members are all on one instance is served from that instance's memory
// and its leader keeps changing things; a band with members on both
// instances refuses its leader's changes (STORE_UNAVAILABLE: they could
// not reach the member on the other instance) and keeps playing. When
// Redis answers again the newest state is written back, every instance
// converges on it, and its members are told.
func TestRedisLossServesFromMemoryAndWritesBack(t *testing.T) {
	srv := redistest.Start(t)
	pfx := prefix(t)
	a := newInstance(t, open(t, srv.URL(), pfx, "A"), engineConfig())
	b := newInstance(t, open(t, srv.URL(), pfx, "B"), engineConfig())
	if _, err := a.eng.Join("lead", engine.JoinRequest{SessionID: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.eng.Join("follow", engine.JoinRequest{SessionID: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.eng.Play("lead", "s1", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.eng.Join("solo", engine.JoinRequest{SessionID: "s2"}); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	// The first command after the loss finds out and is served anyway:
	// the band on A alone cannot split.
	st, err := a.eng.Seek("solo", "s2", 42_000)
	if err != nil {
		t.Fatalf("seek while Redis is down: %v", err)
	}
	if st, err = a.eng.SetTempo("solo", "s2", 96); err != nil {
		t.Fatalf("set_tempo while Redis is down: %v", err)
	}
	eventually(t, 3*time.Second, "both instances noticed", func() bool { return !a.rs.Available() && !b.rs.Available() })
	// The band on both instances is refused: B's member could not get it.
	if _, err := a.eng.Seek("lead", "s1", 42_000); code(err) != protocol.CodeStoreUnavailable {
		t.Fatalf("seek in a band spanning instances while Redis is down: %v, want %s", err, protocol.CodeStoreUnavailable)
	}
	if !a.rs.DownSince().Before(time.Now()) {
		t.Fatal("DownSince not set while unavailable")
	}
	if got := a.out.snapshotVersions("solo"); got[len(got)-1] != st.Version {
		t.Fatalf("the leader did not get its own change from memory: versions %v, want last %d", got, st.Version)
	}
	if s1, _ := a.eng.Session("s1"); !s1.IsPlaying || s1.Position > 40_000 {
		t.Fatalf("the refused seek moved the band, or it stopped: %+v", s1)
	}

	if err := srv.Start(); err != nil { // empty: nothing was persisted
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the newest state written back and seen everywhere", func() bool {
		rec, ok, err := a.rs.Load(context.Background(), "s2")
		if err != nil || !ok || rec.Version != st.Version || rec.Tempo != 96 {
			return false
		}
		sa, _ := a.eng.Session("s1")
		sb, _ := b.eng.Session("s1")
		vb := b.out.snapshotVersions("follow")
		va := a.out.snapshotVersions("lead")
		return sa.Version == sb.Version && len(vb) > 0 && vb[len(vb)-1] == sb.Version && va[len(va)-1] == sa.Version &&
			sa.LeaderSocketID != nil && *sa.LeaderSocketID == "lead" && sb.LeaderSocketID != nil && *sb.LeaderSocketID == "lead"
	})
	sa, _ := a.eng.Session("s1")
	sb, _ := b.eng.Session("s1")
	if sa.Position-sb.Position > 50 || sb.Position-sa.Position > 50 || !sb.IsPlaying || sb.MemberCount != 2 {
		t.Fatalf("instances disagree after the write-back: A %+v\nB %+v", sa, sb)
	}
	// And the shared mode works again: B's follower sees A's next change.
	next, err := a.eng.Pause("lead", "s1")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "a change after the outage reaches B", func() bool {
		vb := b.out.snapshotVersions("follow")
		return vb[len(vb)-1] == next.Version
	})
}

// Redis unreachable at start: the instance starts, serves from memory,
// reports it, and writes its sessions to Redis once it answers.
func TestRedisUnavailableAtStart(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	rs := open(t, srv.URL(), prefix(t), "A")
	if rs.Available() {
		t.Fatal("Available with no Redis running")
	}
	a := newInstance(t, rs, engineConfig())
	st, err := a.eng.Join("m1", engine.JoinRequest{SessionID: "s1"})
	if err != nil {
		t.Fatalf("join with Redis down: %v", err)
	}
	if st, err = a.eng.UpdateMessage("m1", "s1", "from memory"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "session written back", func() bool {
		rec, ok, _ := rs.Load(context.Background(), "s1")
		return ok && rec.Version == st.Version && rec.Message == "from memory"
	})
}

// The metrics history: each instance appends its samples, and reading
// returns all of them merged in time order with their instance, trimmed
// to the retention; without Redis it answers from memory.
func TestHistoryMergedAcrossInstances(t *testing.T) {
	ctx := context.Background()
	url, pfx := sharedURL(t), prefix(t)
	ha := open(t, url, pfx, "A").History(time.Hour, 100)
	hb := open(t, url, pfx, "B").History(time.Hour, 100)
	now := time.Now().UnixMilli()
	for _, c := range []struct {
		h  *redisstore.History
		ts int64
	}{{ha, now - 3000}, {hb, now - 2000}, {ha, now - 1000}, {hb, now}} {
		if err := c.h.Append(ctx, metrics.Sample{Timestamp: c.ts, Connections: c.ts % 1000}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := hb.Range(ctx, time.UnixMilli(now-2500))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"B", "A", "B"}
	if len(got) != len(want) {
		t.Fatalf("Range = %d samples %+v, want %d", len(got), got, len(want))
	}
	for i, s := range got {
		if s.Instance != want[i] || (i > 0 && s.Timestamp < got[i-1].Timestamp) {
			t.Fatalf("sample %d: instance %q at %d; want %q in time order", i, s.Instance, s.Timestamp, want[i])
		}
	}

	// Retention: a sample older than it is gone after the next append.
	short := open(t, url, pfx, "C").History(time.Second, 100)
	_ = short.Append(ctx, metrics.Sample{Timestamp: now - 5000})
	_ = short.Append(ctx, metrics.Sample{Timestamp: now})
	all, _ := short.Range(ctx, time.UnixMilli(0))
	for _, s := range all {
		if s.Instance == "C" && s.Timestamp == now-5000 {
			t.Fatal("a sample older than the retention was kept")
		}
	}

	// Redis gone: this instance's own samples, from memory.
	srv := redistest.Start(t)
	rs := open(t, srv.URL(), prefix(t), "D")
	hd := rs.History(time.Hour, 10)
	_ = hd.Append(ctx, metrics.Sample{Timestamp: now})
	srv.Stop()
	eventually(t, 3*time.Second, "unavailable", func() bool { return !rs.Available() })
	if err := hd.Append(ctx, metrics.Sample{Timestamp: now + 1}); err == nil {
		t.Error("Append reported success with Redis down")
	}
	mem, err := hd.Range(ctx, time.UnixMilli(0))
	if err != nil || len(mem) != 2 || mem[1].Instance != "D" {
		t.Fatalf("Range without Redis = %+v, %v; want this instance's 2 samples", mem, err)
	}
}
