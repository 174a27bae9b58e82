package socketio

import (
	"strconv"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/wsframe"
)

func TestWriterCoalescesPendingFrames(t *testing.T) {
	s := testServer(t, Options{})
	sink := newSink()
	sink.block = make(chan struct{})
	c := newTestConn(s, "a", sink)
	c.Join("band")
	_ = s.Broadcast("band", "e", 0)
	time.Sleep(10 * time.Millisecond)
	for i := 1; i <= 20; i++ {
		_ = s.Broadcast("band", "e", i)
	}
	close(sink.block)
	waitIdle(t, c)
	// Two vectored writes: the first frame, then the 20 that queued
	// behind it.
	st := s.Stats()
	if st.FramesOut != 21 || st.Writes != 2 {
		t.Fatalf("frames out = %d in %d writes, want 21 in 2", st.FramesOut, st.Writes)
	}
	want := ""
	for i := 0; i <= 20; i++ {
		want += string(newFrame(wsframe.OpText, wsframe.AppendEvent(nil, "e", []byte(strconv.Itoa(i)), "")).plain)
	}
	if got := sink.written(); got != want {
		t.Fatalf("bytes on the wire differ from the frames in order:\n got %q\nwant %q", got, want)
	}
}

// A client that sends a burst of answered events is held back while its
// answers are more than half its queue, and goes on as soon as the writer
// has taken them below a quarter: not after the write timeout, and without
// its queue overflowing.
func TestBurstWaitsForItsOwnAnswers(t *testing.T) {
	s := testServer(t, Options{WriteQueueSize: 16, WriteTimeout: 10 * time.Second})
	sink := newSink()
	sink.block = make(chan struct{}) // the client is slow to read
	c := newTestConn(s, "burst", sink)
	frame := func(i int) *Frame {
		return newFrame(wsframe.OpText, wsframe.AppendEvent(nil, "e", []byte(strconv.Itoa(i)), ""))
	}
	c.enqueue(frame(0)) // taken by the writer, whose write then blocks
	for deadline := time.Now().Add(5 * time.Second); ; {
		c.mu.Lock()
		taken := c.inWrite
		c.mu.Unlock()
		if taken {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer never took the first frame")
		}
		time.Sleep(time.Millisecond)
	}
	for i := 1; i <= 9; i++ { // more than half the queue waits behind it
		c.enqueue(frame(i))
	}
	released := make(chan struct{})
	go func() {
		c.awaitWriter()
		close(released)
	}()
	select {
	case <-released:
		t.Fatal("the client's reading went on with 9 of 16 answers pending")
	case <-time.After(50 * time.Millisecond):
	}
	start := time.Now()
	close(sink.block) // the client reads again
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("the client's reading never resumed")
	}
	if waited := time.Since(start); waited > time.Second {
		t.Fatalf("resumed %v after the queue drained: it waited for the timeout, not the writer", waited)
	}
	if c.isClosed() {
		t.Fatal("the connection was closed")
	}
}
