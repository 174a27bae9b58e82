// Package storetest is the contract of store.Shared as one test suite,
// written once and run against every implementation: the in-process store
// (internal/store) and Redis (internal/redisstore, on a real
// redis-server). The engine relies on exactly what these tests pin down.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/store"
)

// Config is what a test asks of the store it opens; zero fields take the
// implementation's defaults.
type Config struct {
	TTL       time.Duration // records unchanged this long expire
	LogMaxLen int           // operations kept per session log
}

// Factory opens a fresh, empty store for one test and returns how to
// open instances on it: every instance returned shares the records of
// the others (several engines on one store).
type Factory func(t *testing.T, cfg Config) (instance func(name string) store.Shared)

// Run runs the contract suite against the implementation f opens.
func Run(t *testing.T, f Factory) {
	tests := []struct {
		name string
		fn   func(*testing.T, Factory)
	}{
		{"SaveIsNewerOnly", testSaveIsNewerOnly},
		{"RecordsDoNotAlias", testRecordsDoNotAlias},
		{"CommitCompareAndSet", testCommitCompareAndSet},
		{"CommitUnderContentionLosesNothing", testContention},
		{"WriteBackHigherVersionWins", testWriteBack},
		{"PublishedBatchesMatchTheLog", testPublishedMatchLog},
		{"DeliveryInPublishOrderAcrossInstances", testDeliveryOrder},
		{"FollowIsCounted", testFollowCounted},
		{"SinceReportsTrimming", testSinceTrimmed},
		{"IdleSessionsExpire", testExpiry},
	}
	// One at a time: under a loaded machine, parallel clients made a
	// shared redis-server answer late enough to count as an outage.
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, f) })
	}
}

func open(t *testing.T, f Factory, cfg Config) store.Shared {
	return f(t, cfg)("i1")
}

// Rec is a record of session id at version with leader term term.
func Rec(id string, version, term uint64) store.SessionRecord {
	return store.SessionRecord{SessionID: id, Tempo: 120, LeaderID: "a", LeaderTerm: term, Version: version,
		Members: []store.Member{{SocketID: "a", DisplayName: "Ann", Role: "leader", JoinedAt: 1, Connected: true, Instance: "i1"}}}
}

// snapshotOp is one broadcast carrying the version, encoded or as a value.
func snapshotOp(v uint64) []store.Op {
	return []store.Op{{Kind: store.OpBroadcast, Event: "snapshot", Payload: json.RawMessage(`{"version":` + strconv.FormatUint(v, 10) + `}`)}}
}

func stored(t *testing.T, s store.Shared, id string) store.SessionRecord {
	t.Helper()
	rec, ok, err := s.Load(context.Background(), id)
	if err != nil || !ok {
		t.Fatalf("Load(%q) = ok %v, err %v", id, ok, err)
	}
	return rec
}

// Save refuses anything not newer, Load returns what was saved, Delete
// removes it and frees the id.
func testSaveIsNewerOnly(t *testing.T, f Factory) {
	ctx := context.Background()
	s := open(t, f, Config{})
	if _, ok, err := s.Load(ctx, "s1"); ok || err != nil {
		t.Fatalf("Load of an absent session = %v, %v", ok, err)
	}
	if err := s.Save(ctx, Rec("", 1, 1)); err == nil {
		t.Fatal("Save accepted a record without a session id")
	}
	if err := s.Save(ctx, Rec("s1", 3, 1)); err != nil {
		t.Fatal(err)
	}
	for _, v := range []uint64{3, 2, 0} {
		r := Rec("s1", v, 1)
		r.Message = "stale"
		if err := s.Save(ctx, r); !errors.Is(err, store.ErrConflict) {
			t.Errorf("Save of version %d over 3: %v, want ErrConflict", v, err)
		}
	}
	got := stored(t, s, "s1")
	if got.Version != 3 || got.Message == "stale" || got.Members[0].Instance != "i1" || got.Members[0].DisplayName != "Ann" {
		t.Fatalf("stored %+v", got)
	}
	if err := s.Delete(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "absent"); err != nil {
		t.Fatalf("Delete of an absent record: %v", err)
	}
	if _, ok, _ := s.Load(ctx, "s1"); ok {
		t.Fatal("record still there after Delete")
	}
	if err := s.Save(ctx, Rec("s1", 1, 1)); err != nil {
		t.Fatalf("Save after Delete: %v", err)
	}
	if !s.Available() || s.Instance() != "i1" {
		t.Fatalf("Available %v, Instance %q", s.Available(), s.Instance())
	}
}

// What a caller does with a record after saving or loading it never
// changes the stored one. (A committed record is the store's: Commit's
// callers hand it over, and the in-process store keeps it as it is.)
func testRecordsDoNotAlias(t *testing.T, f Factory) {
	ctx := context.Background()
	s := open(t, f, Config{})
	r := Rec("s1", 1, 1)
	if err := s.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.Members[0].DisplayName = "changed after save"
	got := stored(t, s, "s1")
	got.Members[0].DisplayName = "changed after load"
	if again := stored(t, s, "s1"); again.Members[0].DisplayName != "Ann" {
		t.Fatalf("the stored record changed with a caller's copy: %q", again.Members[0].DisplayName)
	}
}

// Commit is an exact compare-and-set on (version, leader term): a writer
// that read an older version, or evaluated its command under a deposed
// leader's term, never lands, and gets the stored record to retry with.
func testCommitCompareAndSet(t *testing.T, f Factory) {
	ctx := context.Background()
	s := open(t, f, Config{})
	res, err := s.Commit(ctx, Rec("s1", 2, 1), 1, 0, snapshotOp(2))
	if !errors.Is(err, store.ErrConflict) || res.Found {
		t.Fatalf("commit from version 1 with no record: res %+v err %v; want ErrConflict, not found", res, err)
	}
	if _, err := s.Commit(ctx, Rec("s1", 1, 1), 0, 0, snapshotOp(1)); err != nil {
		t.Fatal(err)
	}
	res, err = s.Commit(ctx, Rec("s1", 1, 1), 0, 0, snapshotOp(1))
	if !errors.Is(err, store.ErrConflict) || !res.Found || res.Current.Version != 1 || res.Written {
		t.Fatalf("second commit from version 0: res %+v err %v; want ErrConflict with the stored version 1", res, err)
	}
	// Leadership moved on (term 2) at version 2.
	if _, err := s.Commit(ctx, Rec("s1", 2, 2), 1, 1, snapshotOp(2)); err != nil {
		t.Fatal(err)
	}
	// A command evaluated with the right version but the old term.
	if _, err := s.Commit(ctx, Rec("s1", 3, 1), 2, 1, snapshotOp(3)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("commit under a stale leader term: %v, want ErrConflict", err)
	}
	if got := stored(t, s, "s1"); got.Version != 2 || got.LeaderTerm != 2 {
		t.Fatalf("a refused commit changed the record: %+v", got)
	}
	// A commit without operations changes the record and logs nothing.
	res, err = s.Commit(ctx, Rec("s1", 3, 2), 2, 2, nil)
	if err != nil || !res.Written || res.Batch.Last != res.Batch.Prev {
		t.Fatalf("commit without ops: %+v, %v", res, err)
	}
	if got := stored(t, s, "s1"); got.Version != 3 {
		t.Fatalf("commit without ops: stored version %d", got.Version)
	}
	// A stored record older than the caller's copy lost acknowledged
	// changes (a failover): the commit restores them instead of failing.
	if err := s.Save(ctx, Rec("s2", 1, 1)); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Commit(ctx, Rec("s2", 4, 1), 3, 1, snapshotOp(4)); err != nil || !res.Written {
		t.Fatalf("commit over a record that lost changes: %+v, %v; want written", res, err)
	}
	if got := stored(t, s, "s2"); got.Version != 4 {
		t.Fatalf("after the repair the stored version is %d, want 4", got.Version)
	}
}

// Many writers racing on one session, each reading, changing and
// committing with retries: no update is lost, every version is taken
// exactly once, and the log holds them in version order.
func testContention(t *testing.T, f Factory) {
	ctx := context.Background()
	s := open(t, f, Config{LogMaxLen: 1000})
	const writers, each = 8, 25
	var conflicts atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Until the session has taken every update, so that a commit
			// whose answer was lost (a store that blinked) is not counted
			// twice.
			for {
				cur, found, err := s.Load(ctx, "s1")
				if err != nil {
					if transient(t, s, err) {
						continue
					}
					return
				}
				if !found {
					cur = Rec("s1", 0, 0)
				}
				if cur.Version >= writers*each {
					return
				}
				next := cur.Clone()
				next.Version++
				next.Message += string(rune('a' + w))
				_, err = s.Commit(ctx, next, cur.Version, cur.LeaderTerm, snapshotOp(next.Version))
				switch {
				case errors.Is(err, store.ErrConflict):
					conflicts.Add(1)
				case err != nil && !transient(t, s, err):
					return
				}
			}
		}()
	}
	wg.Wait()
	got := stored(t, s, "s1")
	if got.Version != writers*each || len(got.Message) != writers*each {
		t.Fatalf("after %d commits: version %d, %d updates kept; want both %d", writers*each, got.Version, len(got.Message), writers*each)
	}
	t.Logf("%d conflicts retried", conflicts.Load())
	batches, complete, err := s.Since(ctx, "s1", "0-0")
	if err != nil || !complete || len(batches) != writers*each {
		t.Fatalf("log: %d batches, complete %v, err %v", len(batches), complete, err)
	}
	for i, b := range batches {
		if b.Version != uint64(i+1) {
			t.Fatalf("log entry %d has version %d", i, b.Version)
		}
	}
}

// WriteBack (an instance catching up after an outage) stores its record
// only when it is newer: a higher version, never a lower leader term.
func testWriteBack(t *testing.T, f Factory) {
	ctx := context.Background()
	s := open(t, f, Config{})
	res, err := s.WriteBack(ctx, Rec("s1", 5, 2), snapshotOp(5))
	if err != nil || !res.Written || len(res.Batch.Ops) != 1 || res.Batch.Ops[0].ID == "" {
		t.Fatalf("write back with no record: %+v, %v", res, err)
	}
	for _, r := range []store.SessionRecord{Rec("s1", 5, 2), Rec("s1", 4, 3), Rec("s1", 9, 1)} {
		r.Message = "loser"
		res, err := s.WriteBack(ctx, r, snapshotOp(r.Version))
		if err != nil || res.Written || !res.Found || res.Current.Version != 5 {
			t.Fatalf("write back of version %d term %d over 5/2: %+v, %v; want refused with the stored record", r.Version, r.LeaderTerm, res, err)
		}
	}
	if res, err := s.WriteBack(ctx, Rec("s1", 6, 2), nil); err != nil || !res.Written {
		t.Fatalf("write back of a newer version: %+v, %v", res, err)
	}
	if got := stored(t, s, "s1"); got.Version != 6 || got.Message == "loser" {
		t.Fatalf("stored %+v", got)
	}
}

// transient reports whether err came from a store that is unavailable for
// a moment (a Redis client whose health check timed out on a loaded
// machine), after waiting for it to come back; any other error fails the
// test.
func transient(t *testing.T, s store.Shared, err error) bool {
	if s.Available() {
		t.Error(err)
		return false
	}
	deadline := time.Now().Add(5 * time.Second)
	for !s.Available() {
		if time.Now().After(deadline) {
			t.Errorf("the store stayed unavailable after %v", err)
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// listener records deliveries and resyncs.
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

func (l *listener) batches(id string) []store.Batch {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]store.Batch(nil), l.got[id]...)
}

// Eventually polls cond until it holds or the deadline passes.
func Eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// payload returns an op's JSON, whichever form the store handed it in.
func payload(op store.Op) string {
	if op.Payload != nil {
		return string(op.Payload)
	}
	b, _ := json.Marshal(op.Value)
	return string(b)
}

// What a follower receives is what the log holds, in the same order, with
// the log ids, and a batch's Prev is the previous batch's Last.
func testPublishedMatchLog(t *testing.T, f Factory) {
	ctx := context.Background()
	inst := f(t, Config{})
	w, fl := inst("w"), inst("f")
	l := &listener{}
	fl.Listen(l)
	_, found, cursor, err := fl.Follow(ctx, "s1")
	if err != nil || found || cursor != "0-0" {
		t.Fatalf("Follow = found %v cursor %q err %v", found, cursor, err)
	}
	for v := uint64(1); v <= 5; v++ {
		ops := append(snapshotOp(v),
			store.Op{Kind: store.OpToMember, Member: "m", Event: "snapshot", Value: map[string]uint64{"v": v}},
			store.Op{Kind: store.OpJoin, Member: "m"})
		term := uint64(1)
		if v == 1 {
			term = 0 // no record yet
		}
		if _, err := w.Commit(ctx, Rec("s1", v, 1), v-1, term, ops); err != nil {
			t.Fatal(err)
		}
	}
	Eventually(t, 3*time.Second, "5 batches delivered", func() bool { return len(l.batches("s1")) == 5 })
	got := l.batches("s1")
	logged, complete, err := w.Since(ctx, "s1", "0-0")
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
		if want := `{"v":` + strconv.Itoa(i+1) + `}`; payload(b.Ops[1]) != want {
			t.Fatalf("batch %d: an op's value arrived as %s, want %s", i, payload(b.Ops[1]), want)
		}
		for j, op := range b.Ops {
			lo := logged[i].Ops[j]
			if op.ID != lo.ID || op.Kind != lo.Kind || payload(op) != payload(lo) {
				t.Fatalf("batch %d op %d published %+v, logged %+v", i, j, op, lo)
			}
			if j > 0 && store.CompareLogIDs(b.Ops[j-1].ID, op.ID) >= 0 {
				t.Fatalf("batch %d: ids %s then %s do not increase", i, b.Ops[j-1].ID, op.ID)
			}
			if _, ok := store.LogSeq(op.ID); !ok {
				t.Fatalf("log id %q is not of the form ms-seq", op.ID)
			}
		}
		if b.Last != b.Ops[2].ID {
			t.Fatalf("batch %d Last %q, last op id %q", i, b.Last, b.Ops[2].ID)
		}
		prev = b.Last
	}
	// Since from the middle returns exactly the rest.
	rest, complete, err := w.Since(ctx, "s1", got[2].Last)
	if err != nil || !complete || len(rest) != 2 || rest[0].Version != 4 || rest[0].Prev != got[2].Last {
		t.Fatalf("Since(batch 3) = %d batches from version %v, complete %v, err %v", len(rest), rest, complete, err)
	}
	// A follower that comes later starts at the log's end.
	_, found, cursor, err = inst("late").Follow(ctx, "s1")
	if err != nil || !found || cursor != got[4].Last {
		t.Fatalf("late Follow: found %v cursor %q (want %q) err %v", found, cursor, got[4].Last, err)
	}
}

// Two instances committing to one session at once: a third that follows
// it receives every batch exactly once, in version order, each following
// on from the one before.
func testDeliveryOrder(t *testing.T, f Factory) {
	ctx := context.Background()
	inst := f(t, Config{})
	l := &listener{}
	fl := inst("f")
	fl.Listen(l)
	if _, _, _, err := fl.Follow(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	const each = 40
	var wg sync.WaitGroup
	for _, name := range []string{"a", "b"} {
		w := inst(name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				cur, found, err := w.Load(ctx, "s1")
				if err != nil {
					if transient(t, w, err) {
						continue
					}
					return
				}
				if !found {
					cur = Rec("s1", 0, 0)
				}
				if cur.Version >= 2*each {
					return
				}
				next := cur.Clone()
				next.Version++
				_, err = w.Commit(ctx, next, cur.Version, cur.LeaderTerm, snapshotOp(next.Version))
				if err != nil && !errors.Is(err, store.ErrConflict) && !transient(t, w, err) {
					return
				}
			}
		}()
	}
	wg.Wait()
	Eventually(t, 3*time.Second, "every batch delivered", func() bool { return len(l.batches("s1")) == 2*each })
	prev := "0-0"
	for i, b := range l.batches("s1") {
		if b.Version != uint64(i+1) || b.Prev != prev {
			t.Fatalf("delivery %d: version %d prev %q; want version %d prev %q", i, b.Version, b.Prev, i+1, prev)
		}
		prev = b.Last
	}
}

// Follow calls are counted: a session followed twice and unfollowed once
// is still delivered; unfollowed as often as followed, it is not.
func testFollowCounted(t *testing.T, f Factory) {
	ctx := context.Background()
	inst := f(t, Config{})
	w, fl := inst("w"), inst("f")
	l := &listener{}
	fl.Listen(l)
	for range 2 {
		if _, _, _, err := fl.Follow(ctx, "s1"); err != nil {
			t.Fatal(err)
		}
	}
	fl.Unfollow("s1")
	if _, err := w.Commit(ctx, Rec("s1", 1, 1), 0, 0, snapshotOp(1)); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 3*time.Second, "delivery while still followed once", func() bool { return len(l.batches("s1")) == 1 })
	fl.Unfollow("s1")
	if _, err := w.Commit(ctx, Rec("s1", 2, 1), 1, 1, snapshotOp(2)); err != nil {
		t.Fatal(err)
	}
	// A marker session proves deliveries went on meanwhile.
	if _, _, _, err := fl.Follow(ctx, "marker"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(ctx, Rec("marker", 1, 1), 0, 0, snapshotOp(1)); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 3*time.Second, "the marker delivered", func() bool { return len(l.batches("marker")) == 1 })
	if n := len(l.batches("s1")); n != 1 {
		t.Fatalf("%d deliveries of an unfollowed session, want 1 from before", n)
	}
}

// A log keeps LogMaxLen operations (at least); a cursor whose entry was
// trimmed gets complete=false, so the follower knows it missed events.
func testSinceTrimmed(t *testing.T, f Factory) {
	ctx := context.Background()
	s := open(t, f, Config{LogMaxLen: 10})
	var lasts []string
	for v := uint64(1); v <= 300; v++ {
		term := uint64(1)
		if v == 1 {
			term = 0
		}
		res, err := s.Commit(ctx, Rec("s1", v, 1), v-1, term, snapshotOp(v))
		if err != nil {
			t.Fatal(err)
		}
		lasts = append(lasts, res.Batch.Last)
	}
	if _, complete, err := s.Since(ctx, "s1", lasts[0]); err != nil || complete {
		t.Fatalf("Since a trimmed entry: complete %v err %v; want false", complete, err)
	}
	got, complete, err := s.Since(ctx, "s1", lasts[290])
	if err != nil || !complete || len(got) != 9 || got[0].Version != 292 || got[8].Last != lasts[299] {
		t.Fatalf("Since the 291st entry: %d batches, complete %v, err %v", len(got), complete, err)
	}
	if got, complete, err := s.Since(ctx, "s1", lasts[299]); err != nil || !complete || len(got) != 0 {
		t.Fatalf("Since the last entry: %d batches, complete %v, err %v", len(got), complete, err)
	}
}

// A session's record and log take the TTL and every change renews it, so
// an idle session disappears on its own; a commit that expected the old
// record learns it is gone (Found false) and may write its copy back.
func testExpiry(t *testing.T, f Factory) {
	ctx := context.Background()
	const ttl = 600 * time.Millisecond
	s := open(t, f, Config{TTL: ttl})
	if _, err := s.Commit(ctx, Rec("s1", 1, 1), 0, 0, snapshotOp(1)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl / 2)
	if _, err := s.Commit(ctx, Rec("s1", 2, 1), 1, 1, snapshotOp(2)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl * 2 / 3) // past the first commit's TTL, not the second's
	if _, ok, _ := s.Load(ctx, "s1"); !ok {
		t.Fatal("a change did not renew the session's TTL")
	}
	Eventually(t, 3*time.Second, "idle session expired", func() bool {
		_, ok, _ := s.Load(ctx, "s1")
		return !ok
	})
	if got, complete, err := s.Since(ctx, "s1", "0-0"); err != nil || len(got) != 0 || !complete {
		t.Fatalf("the log outlived its session: %d batches, complete %v, err %v", len(got), complete, err)
	}
	res, err := s.Commit(ctx, Rec("s1", 3, 1), 2, 1, snapshotOp(3))
	if !errors.Is(err, store.ErrConflict) || res.Found {
		t.Fatalf("commit on an expired record: %+v %v; want ErrConflict, not found", res, err)
	}
	if res, err := s.WriteBack(ctx, Rec("s1", 3, 1), snapshotOp(3)); err != nil || !res.Written {
		t.Fatalf("write back over an expired record: %+v, %v", res, err)
	}
}
