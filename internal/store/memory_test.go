package store_test

import (
	"testing"

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
