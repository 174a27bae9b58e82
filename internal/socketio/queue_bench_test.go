package socketio

import (
	"testing"

	"github.com/bandsync/bandsync/internal/wsframe"
)

// BenchmarkDrainLongQueue queues 20,000 frames to one connection and
// drains them in batches of 100: with the tail copied down on every batch
// this was quadratic in the queue's length, with a head index it is not.
func BenchmarkDrainLongQueue(b *testing.B) {
	s := testServer(b, Options{WriteQueueSize: 1 << 20, MaxWriteBatch: 100})
	f := newFrame(wsframe.OpText, []byte(`42["x",1]`))
	for b.Loop() {
		sink := newSink()
		sink.discard = true
		c := newTestConn(s, "q", sink)
		c.mu.Lock()
		c.writing = true // hold the writer off while the queue fills
		c.mu.Unlock()
		for range 20_000 {
			c.enqueue(f)
		}
		c.flush(false)
		c.close(ReasonTransportClose, nil)
	}
}
