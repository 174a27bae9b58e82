//go:build !race

package metrics

import (
	"log/slog"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/protocol"
)

// The race detector instruments atomics with allocations of its own, so the
// allocation check only runs in normal builds.
func TestHotPathDoesNotAllocate(t *testing.T) {
	m := New(Options{Logger: slog.New(slog.DiscardHandler)})
	for name, f := range map[string]func(){
		"ConnOpened":             m.ConnOpened,
		"ConnClosed":             m.ConnClosed,
		"ConnError":              m.ConnError,
		"ConnRejected":           func() { m.ConnRejected(protocol.RejectOrigin) },
		"ConnRejected unknown":   func() { m.ConnRejected("whatever") },
		"MessageIn":              m.MessageIn,
		"MessagesOut":            func() { m.MessagesOut(12) },
		"ObserveSyncLatency":     func() { m.ObserveSyncLatency(12 * time.Millisecond) },
		"ObserveEventProcessing": func() { m.ObserveEventProcessing(300 * time.Microsecond) },
		"RateLimited":            m.RateLimited,
		"ProtocolError":          func() { m.ProtocolError("NOT_LEADER") },
		"ProtocolError unknown":  func() { m.ProtocolError("NOPE") },
		"ObserveClientSync":      func() { m.ObserveClientSync(-time.Millisecond, 8*time.Millisecond, time.Millisecond) },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s allocates %v times per call, want 0", name, n)
		}
	}
}
