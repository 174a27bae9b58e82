package socketio

import (
	"bytes"
	"testing"
	"time"
)

func TestVolatileDroppedWhenBehindAndQueueOverflowDisconnects(t *testing.T) {
	s := testServer(t, Options{WriteQueueSize: 8})
	sink := newSink()
	sink.block = make(chan struct{}) // the client stopped reading
	c := newTestConn(s, "slow", sink)
	c.Join("band")
	fast := newSink()
	f := newTestConn(s, "fast", fast)
	f.Join("band")

	// The first frame is taken by the writer, which then blocks.
	_ = s.Broadcast("band", "snapshot", 1)
	time.Sleep(10 * time.Millisecond)
	_ = s.BroadcastVolatile("band", "scroll_tick", 1) // queued: nothing pending
	time.Sleep(5 * time.Millisecond)
	_ = s.BroadcastVolatile("band", "scroll_tick", 2) // dropped: one pending behind a stuck write
	c.mu.Lock()
	pending := c.qlenLocked()
	c.mu.Unlock()
	if pending != 1 {
		t.Fatalf("pending frames = %d, want 1 (the second tick dropped)", pending)
	}
	// A client that stopped reading is dropped once its queue is full,
	// while members that keep up are served at the same pace.
	for i := 0; i < 10; i++ {
		_ = s.Broadcast("band", "snapshot", i)
		time.Sleep(time.Millisecond)
	}
	select {
	case <-c.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("a connection over its queue bound was not closed")
	}
	waitIdle(t, f)
	if got := bytes.Count([]byte(fast.written()), []byte(`"scroll_tick"`)); got != 2 {
		t.Fatalf("the fast member got %d ticks, want 2: a slow member must not hold others back: %q", got, fast.written())
	}
}

func (c *Conn) queueLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.qlenLocked()
}
