package metrics

import (
	"context"
	"sync"
	"time"
)

// HistoryStore keeps the interval samples behind GET /metrics/history.
// Implementations must be safe for concurrent use.
type HistoryStore interface {
	Append(ctx context.Context, s Sample) error
	// Range returns the samples whose Timestamp is at or after since,
	// oldest first.
	Range(ctx context.Context, since time.Time) ([]Sample, error)
}

// MemoryHistory is a HistoryStore holding the newest samples in a bounded
// ring, so a long-running server's history costs constant memory.
type MemoryHistory struct {
	mu       sync.Mutex
	capacity int
	// buf grows up to capacity, then next wraps around it; growing lazily
	// avoids reserving a day of samples for a server that runs for minutes.
	buf  []Sample
	next int
}

// NewMemoryHistory returns a ring holding at most capacity samples
// (at least one).
func NewMemoryHistory(capacity int) *MemoryHistory {
	return &MemoryHistory{capacity: max(capacity, 1)}
}

// Append stores s, evicting the oldest sample when the ring is full.
func (h *MemoryHistory) Append(_ context.Context, s Sample) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.buf) < h.capacity {
		h.buf = append(h.buf, s)
		return nil
	}
	h.buf[h.next] = s
	h.next = (h.next + 1) % h.capacity
	return nil
}

// Range implements HistoryStore.
func (h *MemoryHistory) Range(_ context.Context, since time.Time) ([]Sample, error) {
	cutoff := since.UnixMilli()
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Sample, 0, len(h.buf))
	// Until the ring wraps, next is 0 and this is plain slice order.
	for i := range h.buf {
		s := h.buf[(h.next+i)%len(h.buf)]
		if s.Timestamp >= cutoff {
			out = append(out, s)
		}
	}
	return out, nil
}
