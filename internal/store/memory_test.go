package store_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bandsync/bandsync/internal/store"
)

func record(id string, version uint64) store.SessionRecord {
	return store.SessionRecord{
		SessionID: id,
		Tempo:     120,
		Members: []store.Member{
			{SocketID: "a", DisplayName: "Ann", Role: "leader", JoinedAt: 1, Connected: true},
		},
		LeaderID: "a",
		Version:  version,
	}
}

func TestMemorySaveLoadRoundTrip(t *testing.T) {
	ctx := context.Background()
	m := store.NewMemory()
	if _, ok, err := m.Load(ctx, "s1"); ok || err != nil {
		t.Fatalf("Load of absent session = ok %v, err %v; want false, nil", ok, err)
	}
	want := record("s1", 1)
	if err := m.Save(ctx, want); err != nil {
		t.Fatalf("Save: %v", err)
	}
	got, ok, err := m.Load(ctx, "s1")
	if err != nil || !ok {
		t.Fatalf("Load = ok %v, err %v", ok, err)
	}
	if got.Version != 1 || got.LeaderID != "a" || len(got.Members) != 1 || got.Members[0].DisplayName != "Ann" {
		t.Fatalf("Load returned %+v, want %+v", got, want)
	}
	if m.Mode() != "memory" {
		t.Fatalf("Mode = %q, want memory", m.Mode())
	}
}

func TestMemorySaveIsCompareAndSet(t *testing.T) {
	ctx := context.Background()
	m := store.NewMemory()
	if err := m.Save(ctx, record("s1", 5)); err != nil {
		t.Fatal(err)
	}
	for _, v := range []uint64{5, 4, 0} {
		r := record("s1", v)
		r.Message = "stale"
		if err := m.Save(ctx, r); !errors.Is(err, store.ErrConflict) {
			t.Errorf("Save version %d over stored 5: err = %v, want ErrConflict", v, err)
		}
	}
	got, _, _ := m.Load(ctx, "s1")
	if got.Version != 5 || got.Message == "stale" {
		t.Fatalf("a refused save changed the record: %+v", got)
	}
	if err := m.Save(ctx, record("s1", 6)); err != nil {
		t.Fatalf("Save of a newer version: %v", err)
	}
}

func TestMemoryRecordsDoNotAlias(t *testing.T) {
	ctx := context.Background()
	m := store.NewMemory()
	r := record("s1", 1)
	if err := m.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.Members[0].DisplayName = "changed after save"
	got, _, _ := m.Load(ctx, "s1")
	if got.Members[0].DisplayName != "Ann" {
		t.Fatal("mutating the saved record's members changed the stored copy")
	}
	got.Members[0].DisplayName = "changed after load"
	again, _, _ := m.Load(ctx, "s1")
	if again.Members[0].DisplayName != "Ann" {
		t.Fatal("mutating a loaded record changed the stored copy")
	}
}

func TestMemoryDelete(t *testing.T) {
	ctx := context.Background()
	m := store.NewMemory()
	if err := m.Delete(ctx, "absent"); err != nil {
		t.Fatalf("Delete of absent record: %v", err)
	}
	_ = m.Save(ctx, record("s1", 3))
	if err := m.Delete(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := m.Load(ctx, "s1"); ok {
		t.Fatal("record still there after Delete")
	}
	// A deleted session starts over: version 1 is accepted again.
	if err := m.Save(ctx, record("s1", 1)); err != nil {
		t.Fatalf("Save after Delete: %v", err)
	}
}

func TestMemoryRejectsEmptyID(t *testing.T) {
	if err := store.NewMemory().Save(context.Background(), record("", 1)); err == nil {
		t.Fatal("Save accepted a record without a session id")
	}
}

// Concurrent writers of the same version: exactly one wins, the rest get
// ErrConflict.
func TestMemoryConcurrentCompareAndSet(t *testing.T) {
	ctx := context.Background()
	m := store.NewMemory()
	const writers = 32
	var wins, conflicts atomic.Int32
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := m.Save(ctx, record("s1", 1))
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, store.ErrConflict):
				conflicts.Add(1)
			default:
				t.Errorf("Save: %v", err)
			}
			_, _, _ = m.Load(ctx, "s1")
		}()
	}
	wg.Wait()
	if wins.Load() != 1 || conflicts.Load() != writers-1 {
		t.Fatalf("wins %d, conflicts %d; want 1 and %d", wins.Load(), conflicts.Load(), writers-1)
	}
}
