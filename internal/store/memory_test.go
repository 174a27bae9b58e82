package store_test

import (
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/store"
	"github.com/bandsync/bandsync/internal/store/storetest"
)

// The in-process store keeps the whole store.Shared contract.
func TestMemoryContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, cfg storetest.Config) func(string) store.Shared {
		m := store.NewMemoryWith(store.MemoryOptions{TTL: cfg.TTL, LogMaxLen: cfg.LogMaxLen})
		return func(name string) store.Shared { return m.Peer(name) }
	})
}

// A record with no members expires after EmptyTTL, one with members
// after TTL.
func TestMemoryEmptySessionsExpireSooner(t *testing.T) {
	now := time.Unix(1000, 0)
	m := store.NewMemoryWith(store.MemoryOptions{TTL: time.Hour, EmptyTTL: 2 * time.Minute, Now: func() time.Time { return now }})
	empty := storetest.Rec("empty", 1, 1)
	empty.Members = nil
	for _, r := range []store.SessionRecord{empty, storetest.Rec("full", 1, 1)} {
		if _, err := m.Commit(t.Context(), r, 0, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(2*time.Minute - time.Millisecond)
	if m.Len() != 2 {
		t.Fatalf("%d records before the empty TTL, want 2", m.Len())
	}
	now = now.Add(time.Millisecond)
	if _, ok, _ := m.Load(t.Context(), "empty"); ok || m.Len() != 1 {
		t.Fatalf("the empty record outlived EmptyTTL (%d records)", m.Len())
	}
	now = now.Add(time.Hour)
	if m.Len() != 0 {
		t.Fatal("a record outlived TTL")
	}
}

// The in-process log keeps an entry for LogMaxAge only: a follower whose
// gap reaches back further is told the log is incomplete (and gets a fresh
// snapshot), and a busy session's recent events stop being kept alive.
func TestMemoryLogForgetsOldEntries(t *testing.T) {
	now := time.Unix(1000, 0)
	m := store.NewMemoryWith(store.MemoryOptions{LogMaxAge: 2 * time.Second, Now: func() time.Time { return now }})
	op := func() []store.Op { return []store.Op{{Kind: store.OpBroadcast, Event: "snapshot", Value: 1}} }
	var lasts []string
	for v := uint64(1); v <= 5; v++ {
		term := uint64(1)
		if v == 1 {
			term = 0 // no record yet
		}
		res, err := m.Commit(t.Context(), storetest.Rec("s1", v, 1), v-1, term, op())
		if err != nil {
			t.Fatal(err)
		}
		lasts = append(lasts, res.Batch.Last)
		now = now.Add(time.Second)
	}
	// Entries of t=1000..1004; the last commit, at 1004, trimmed those
	// older than 1002.
	if _, complete, _ := m.Since(t.Context(), "s1", lasts[1]); complete {
		t.Fatal("Since an entry 3 s old: complete, want the gap reported")
	}
	got, complete, err := m.Since(t.Context(), "s1", lasts[2])
	if err != nil || !complete || len(got) != 2 || got[0].Version != 4 {
		t.Fatalf("Since the entry 2 s old: %d batches (complete %v, err %v), want versions 4 and 5", len(got), complete, err)
	}
	now = now.Add(time.Hour) // the newest entry stays: the next batch's Prev
	res, err := m.Commit(t.Context(), storetest.Rec("s1", 6, 1), 5, 1, nil)
	if err != nil || res.Batch.Prev != lasts[4] {
		t.Fatalf("after an hour the batch follows %q, want %q (err %v)", res.Batch.Prev, lasts[4], err)
	}
}

// Log ids are what a client presents to recover and what Redis's streams
// name entries: "ms-seq", and LogSeq reads back exactly what LogID wrote.
func TestLogIDRoundTrips(t *testing.T) {
	for _, tc := range []struct {
		seq  uint64
		want string
	}{
		{0, "0-0"},
		{1, "0-1"},
		{1<<20 - 1, "0-1048575"},
		{1 << 20, "1-0"},
		{1796042514883<<20 | 19, "1796042514883-19"},
		{(1<<44-1)<<20 | (1<<20 - 1), "17592186044415-1048575"},
	} {
		got := store.LogID(tc.seq)
		if got != tc.want {
			t.Errorf("LogID(%d) = %q, want %q", tc.seq, got, tc.want)
		}
		if back, ok := store.LogSeq(got); !ok || back != tc.seq {
			t.Errorf("LogSeq(%q) = %d, %v; want %d", got, back, ok, tc.seq)
		}
	}
}
