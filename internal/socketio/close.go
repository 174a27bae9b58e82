package socketio

import (
	"encoding/binary"
	"io"
	"net"
	"time"

	"github.com/bandsync/bandsync/internal/wsframe"
)

// recoverable reports whether a socket dropped for reason may come back
// with its state, as in Socket.IO: every reason but a deliberate
// disconnect by either side.
func recoverable(reason string) bool {
	return reason != ReasonClientDisconnect && reason != ReasonServerDisconnect
}

// closeAfterFlushWith closes the connection once what is queued now has
// been written, or the write timeout passed.
func (c *Conn) closeAfterFlushWith(reason string, frame []byte) {
	go func() {
		c.mu.Lock()
		c.awaitLocked(c.srv.opts.WriteTimeout, func() bool { return !c.writing || c.closed })
		c.mu.Unlock()
		c.close(reason, frame)
	}()
}

// closeFrameTimeout bounds what a close frame may wait for: the writer
// finishing the frame it is in the middle of, then the close frame's own
// write.
const closeFrameTimeout = 100 * time.Millisecond

// close ends the connection once. closeFrame, when given, is written
// first (best effort) so the client learns the close code; it only ever
// follows whole frames. If the writer is in the middle of a write, it gets
// until closeFrameTimeout to finish it; if it cannot, the stream may end
// inside a frame and the close frame is left out rather than written into
// the middle of it.
func (c *Conn) close(reason string, closeFrame []byte) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.closeBy = time.Now().Add(closeFrameTimeout)
	if c.inWrite {
		_ = c.nc.SetWriteDeadline(c.closeBy) // see setWriteDeadline
	}
	polled := c.polled
	if c.kicked {
		reason = ReasonServerDisconnect
	}
	c.reason = reason
	rooms := make([]string, 0, len(c.rooms))
	for r := range c.rooms {
		rooms = append(rooms, r)
	}
	clear(c.queue)
	c.queue, c.qhead = nil, 0
	c.held = nil
	c.signalLocked()
	if closeFrame != nil {
		// Once the writer is out of its write it sees closed and writes
		// nothing more: the wire is ours.
		atBoundary := c.awaitLocked(closeFrameTimeout, func() bool { return !c.inWrite })
		if !atBoundary || c.partial {
			closeFrame = nil
		}
	}
	c.mu.Unlock()

	if polled {
		c.srv.poller.forget(c)
	}
	if closeFrame != nil {
		_ = c.nc.SetWriteDeadline(c.closeBy)
		_, _ = c.nc.Write(closeFrame)
		lingerClose(c.nc)
	} else {
		_ = c.nc.Close()
	}
	c.srv.stats.active.Add(-1)
	if c.admitted {
		c.srv.release(c.addrKey)
	}
	c.srv.rooms.leaveAll(c, rooms)
	c.srv.forget(c)
	close(c.closedCh)
	if c.connected.Load() {
		c.srv.disconnected(c, reason, rooms)
	}
}

func (c *Conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func closeFrame(code uint16, reason string) []byte {
	body := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(body, code)
	body = append(body, reason...)
	return newFrame(wsframe.OpClose, body).plain
}

// lingerClose closes a socket we are done with without losing what we
// last wrote to it. Closing a TCP socket that still has unread input makes
// the kernel answer with a reset, and a reset can make the peer's kernel
// discard data its application has not read yet: a flooding client that
// is disconnected would lose the DISCONNECT and the notice explaining it.
// So the sending side is shut first, and the input drained briefly
// before the close.
func lingerClose(nc net.Conn) {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		_ = nc.Close()
		return
	}
	_ = tc.CloseWrite()
	go func() {
		_ = tc.SetReadDeadline(time.Now().Add(lingerTimeout))
		_, _ = io.Copy(io.Discard, io.LimitReader(tc, lingerMaxBytes))
		_ = tc.Close()
	}()
}

// A closing peer answers our close within a round trip; these bound what
// one that does not can cost.
const (
	lingerTimeout  = 2 * time.Second
	lingerMaxBytes = 1 << 20
)
