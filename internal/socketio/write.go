package socketio

import (
	"errors"
	"net"
	"time"

	"github.com/bandsync/bandsync/internal/wsframe"
)

// quickWriteTimeout is how long a shared write worker waits on one
// socket. A write into a socket with buffer space takes microseconds.
const quickWriteTimeout = 2 * time.Millisecond

// testHookWriteStalled, set by a test, runs where a shared worker has
// written part of a batch and hands the rest to a goroutine of the
// connection's own: the moment the wire ends inside a frame.
var testHookWriteStalled func(*Conn)

// flush drains the queue, writing everything pending in one vectored
// write per round, until the queue is empty. Shared write workers run it
// with quick set: their writes get a short deadline, and a connection
// whose socket buffer is full is handed to a goroutine of its own to
// finish with the full write timeout, so one slow phone never holds a
// worker that other connections need.
func (c *Conn) flush(quick bool) {
	batch := c.srv.opts.MaxWriteBatch
	for {
		if len(c.bufs) == 0 {
			c.mu.Lock()
			if (c.qlenLocked() == 0 && !c.pongDue) || c.closed {
				c.writing = false
				c.inWrite = false
				c.signalLocked()
				c.mu.Unlock()
				return
			}
			frames := c.batch[:0]
			if c.pongDue {
				frames = append(frames, newFrame(wsframe.OpPong, c.pong))
				c.pongDue = false
			}
			take := min(batch, c.qlenLocked())
			frames = append(frames, c.queue[c.qhead:c.qhead+take]...)
			clear(c.queue[c.qhead : c.qhead+take])
			c.qhead += take
			if c.qhead == len(c.queue) {
				c.queue, c.qhead = c.queue[:0], 0
			}
			c.inWrite = true
			c.signalLocked() // the queue shrank: awaitWriter may go on
			c.mu.Unlock()

			c.bufs = c.bufsBacking[:0]
			n := 0
			for _, f := range frames {
				b := f.bytesFor(c.deflate, c.srv.opts.CompressionThreshold)
				c.bufs = append(c.bufs, b)
				n += len(b)
			}
			c.bufsBacking = c.bufs
			c.srv.stats.writes.Add(1)
			c.srv.stats.framesOut.Add(uint64(len(frames)))
			if c.srv.opts.OnFramesOut != nil {
				c.srv.opts.OnFramesOut(len(frames))
			}
			c.srv.stats.bytesOut.Add(uint64(n))
			clear(frames)
			c.batch = frames[:0]
		}
		var err error
		if quick && c.raw != nil {
			// A worker tries one non-blocking write: no deadline timer
			// to arm per write, which was a tenth of the server's CPU
			// at 3,000 playing members. What the socket will not take
			// now goes to a goroutine of the connection's own.
			if !c.writeNonblocking() {
				if testHookWriteStalled != nil {
					testHookWriteStalled(c)
				}
				go c.flush(false)
				return
			}
		} else {
			timeout := c.srv.opts.WriteTimeout
			if quick {
				timeout = quickWriteTimeout
			}
			c.setWriteDeadline(timeout)
			_, err = c.bufs.WriteTo(c.nc) // consumes what it wrote
		}
		if err != nil {
			var ne net.Error
			if quick && errors.As(err, &ne) && ne.Timeout() {
				go c.flush(false)
				return
			}
			// The wire may end inside a frame now: no close frame may
			// follow it.
			c.mu.Lock()
			c.inWrite, c.partial = false, len(c.bufs) > 0
			c.signalLocked()
			c.mu.Unlock()
			c.bufs = nil
			c.close(ReasonTransportError, nil)
			return
		}
		clear(c.bufsBacking[:cap(c.bufsBacking)])
		c.bufs = c.bufs[:0]
		c.mu.Lock()
		c.inWrite = false
		c.signalLocked() // at a frame boundary: a close frame may follow
		c.mu.Unlock()
	}
}

// setWriteDeadline bounds the next write by timeout, or by the close's
// deadline once the connection is closing, so a writer finishing its frame
// for a close frame to follow cannot push the close back by a write
// timeout. Setting a deadline arms a timer and does no I/O; it is done
// under c.mu so close's deadline and this one cannot be set out of order.
func (c *Conn) setWriteDeadline(timeout time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	deadline := c.closeBy
	if !c.closed {
		deadline = time.Now().Add(timeout)
	}
	_ = c.nc.SetWriteDeadline(deadline)
}

// awaitWriter holds the reading of a client's next event while more
// than half its write queue is pending. A client that sends a burst of
// events, each answered, then waits for its own answers to go out instead
// of overflowing its queue and being dropped: back-pressure on the one
// sending the burst. Only that client's reading waits, until the writer
// has taken the queue below a quarter, or for the write timeout at most.
func (c *Conn) awaitWriter() {
	high, low := c.srv.opts.WriteQueueSize/2, c.srv.opts.WriteQueueSize/4
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.qlenLocked() <= high {
		return
	}
	c.awaitLocked(c.srv.opts.WriteTimeout, func() bool { return c.qlenLocked() <= low || c.closed })
}

// awaitLocked waits until ready holds or d has passed, and reports
// whether ready held. ready is checked under c.mu whenever the writer
// signals progress (it took frames, finished a write, stopped) and when the
// connection closes. The caller holds c.mu; it is released while waiting.
func (c *Conn) awaitLocked(d time.Duration, ready func() bool) bool {
	if ready() {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for !ready() {
		if c.progress == nil {
			c.progress = make(chan struct{})
		}
		progress := c.progress
		c.mu.Unlock()
		select {
		case <-progress:
			c.mu.Lock()
		case <-timer.C:
			c.mu.Lock()
			return ready()
		}
	}
	return true
}

// signalLocked wakes whoever waits in awaitLocked; the caller holds c.mu.
// Nobody waiting costs a nil check, so the writer signals freely.
func (c *Conn) signalLocked() {
	if c.progress != nil {
		close(c.progress)
		c.progress = nil
	}
}
