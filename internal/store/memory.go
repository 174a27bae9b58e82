package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Memory is a Store that keeps records in process memory. It never fails
// except on a version conflict or an empty session id.
type Memory struct {
	mu      sync.RWMutex
	records map[string]SessionRecord
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{records: make(map[string]SessionRecord)}
}

var errNoID = errors.New("store: record has no session id")

// Save stores a copy of r under the compare-and-set rule of the package.
func (m *Memory) Save(_ context.Context, r SessionRecord) error {
	if r.SessionID == "" {
		return errNoID
	}
	// Copy before taking the lock: the caller may reuse r.Members.
	r = r.Clone()
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.records[r.SessionID]; ok && cur.Version >= r.Version {
		return fmt.Errorf("%w: session %q is at version %d, refusing version %d",
			ErrConflict, r.SessionID, cur.Version, r.Version)
	}
	m.records[r.SessionID] = r
	return nil
}

// Load returns a copy of the stored record.
func (m *Memory) Load(_ context.Context, sessionID string) (SessionRecord, bool, error) {
	m.mu.RLock()
	r, ok := m.records[sessionID]
	m.mu.RUnlock()
	if !ok {
		return SessionRecord{}, false, nil
	}
	return r.Clone(), true, nil
}

// Delete removes the record, if any.
func (m *Memory) Delete(_ context.Context, sessionID string) error {
	m.mu.Lock()
	delete(m.records, sessionID)
	m.mu.Unlock()
	return nil
}

// Mode reports "memory".
func (m *Memory) Mode() string { return "memory" }

// Len reports how many records are stored.
func (m *Memory) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.records)
}
