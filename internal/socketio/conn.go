package socketio

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/bandsync/bandsync/internal/wsframe"
)

// Disconnect reasons, as Socket.IO names them.
const (
	ReasonTransportClose   = "transport close"
	ReasonTransportError   = "transport error"
	ReasonPingTimeout      = "ping timeout"
	ReasonClientDisconnect = "client namespace disconnect"
	ReasonServerDisconnect = "server namespace disconnect"
	ReasonServerShutdown   = "server shutting down"
	ReasonQueueOverflow    = "write queue overflow"
	ReasonParseError       = "parse error"
)

// recoverable reports whether a socket dropped for reason may come back
// with its state, as in Socket.IO: every reason but a deliberate
// disconnect by either side.
func recoverable(reason string) bool {
	return reason != ReasonClientDisconnect && reason != ReasonServerDisconnect
}

var errTooLarge = errors.New("message exceeds maxPayload")

// quickWriteTimeout is how long a shared write worker waits on one
// socket. A write into a socket with buffer space takes microseconds.
const quickWriteTimeout = 2 * time.Millisecond

// maxPendingVolatile bounds the frames a volatile one may queue behind
// even while no write is under way.
const maxPendingVolatile = 8

// Conn is one client's socket on the default namespace.
//
// Reading happens on one goroutine at a time per connection, which also
// runs the event handlers, so a client's events are handled in the order
// it sent them. On Linux that goroutine exists only while the socket has
// bytes to read (see poller); elsewhere it lives as long as the
// connection. Writing happens on a shared write worker, or on a
// goroutine of the connection's own while its socket is full. On Linux
// an idle connection therefore holds no goroutine and no buffer.
type Conn struct {
	srv      *Server
	nc       net.Conn
	id       string // Socket.IO socket id, public (the BandSync socketId)
	pid      string // private id for recovery, never shown to other clients
	deflate  bool
	remote   string
	addrKey  string // the client address its admission slot is counted under
	admitted bool   // holds an admission slot, given back on close

	recovered bool
	// replaySkipped: recovered, but the missed packets were too many to
	// replay; the application owes the client a fresh state.
	replaySkipped bool
	connected     atomic.Bool // Socket.IO CONNECT accepted

	// Value belongs to the application; it is set in the connect handler,
	// before any event of the connection is dispatched.
	Value any

	mu sync.Mutex
	// queue[qhead:] is what waits to be written. The writer advances
	// qhead instead of copying the tail down, so draining a long queue
	// costs what it holds, not its square.
	queue   []*Frame
	qhead   int
	writing bool
	// pong is the payload of the latest client ping not yet answered.
	// RFC 6455 5.5.3 lets a server answer only the latest, so a ping
	// flood costs one slot, never a queue.
	pong     []byte
	pongDue  bool
	inWrite  bool // the writer is inside a write call
	kicked   bool // Disconnect was called
	closed   bool
	holding  bool     // recovery replay in progress: live frames wait in held
	held     []*Frame // frames that arrived during the replay
	rooms    map[string]struct{}
	reason   string
	closedCh chan struct{}

	// bufs is what the current write still has to send (a write that
	// timed out leaves the rest here); bufsBacking keeps its array.
	bufs        net.Buffers
	bufsBacking [][]byte
	batch       []*Frame // the writer's scratch: frames taken from the queue
	// pingSent is when the last ping was queued (unix ns), to time the pong.
	pingSent atomic.Int64
	// lastRead is when bytes last arrived (unix ns): silence longer than
	// pingInterval+pingTimeout is a ping timeout.
	lastRead atomic.Int64
	// timingOut is set once the ping loop has handed the connection to a
	// goroutine to be closed for a ping timeout.
	timingOut atomic.Bool
	// tickEvery is the client's tick rate (SetTickInterval), in ns: 0 for
	// every tick, NoTicks for none; tickDue is when the next one is due.
	// Both are touched by the one goroutine that ticks the session.
	tickEvery, tickDue atomic.Int64
	created            time.Time

	// Read state, touched only by whoever is reading the connection (one
	// at a time): an incomplete frame, and a fragmented message.
	pending  []byte
	frag     []byte
	fragOp   byte
	fragRsv1 bool
	// fragSince is when the unfinished message (or incomplete frame)
	// began: one never finished within incompleteTimeout is dropped.
	fragSince time.Time
	inbound   inboundLimit
	raw       syscall.RawConn
	rio       rawIO
	fd        int
	gen       uint32
	polled    bool // registered with the poller
}

// ID is the socket id the client sees as socket.id.
func (c *Conn) ID() string { return c.id }

// Recovered reports whether this connection resumed a dropped one.
func (c *Conn) Recovered() bool { return c.recovered }

// ReplaySkipped reports whether this connection recovered without the
// packets it missed, because they were more than it could absorb: its
// handler should send the current state instead.
func (c *Conn) ReplaySkipped() bool { return c.replaySkipped }

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() string { return c.remote }

// Done is closed when the connection is gone.
func (c *Conn) Done() <-chan struct{} { return c.closedCh }

// Emit sends an event to this socket, kept for recovery.
func (c *Conn) Emit(event string, payload any) error {
	return c.srv.emit(c.id, []*Conn{c}, event, payload, kindRecorded)
}

// EmitReply sends an event that only makes sense now (a heartbeat or
// latency answer): it is queued like any event but not replayed after a
// recovery, and it does not move the client's recovery offset.
func (c *Conn) EmitReply(event string, payload any) error {
	return c.srv.emit("", []*Conn{c}, event, payload, kindReply)
}

// EmitVolatile sends an event that is dropped if the connection is behind.
func (c *Conn) EmitVolatile(event string, payload any) error {
	return c.srv.emit("", []*Conn{c}, event, payload, kindVolatile)
}

// Join adds the connection to a room.
func (c *Conn) Join(room string) {
	c.srv.rooms.join(c, room)
	c.srv.track(c)
}

// Leave removes the connection from a room.
func (c *Conn) Leave(room string) {
	c.srv.rooms.leave(c, room)
	c.srv.track(c)
}

// Rooms lists the rooms the connection is in.
func (c *Conn) Rooms() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.rooms))
	for r := range c.rooms {
		out = append(out, r)
	}
	return out
}

// Disconnect sends a Socket.IO DISCONNECT and closes the connection; the
// client will not reconnect on its own.
func (c *Conn) Disconnect() {
	// Whatever ends the connection from here on (our close, or the client
	// closing first on reading the packet), the server disconnected it:
	// its session is not kept for recovery.
	c.mu.Lock()
	c.kicked = true
	c.mu.Unlock()
	c.enqueueControl(newFrame(wsframe.OpText, []byte{eioMessage, '0' + byte(PacketDisconnect)}))
	c.closeAfterFlushWith(ReasonServerDisconnect, closeFrame(1000, ""))
}

// enqueue queues a frame for writing. It never blocks: a connection whose
// queue is full is closed instead of slowing the sender, and a volatile
// frame is dropped when anything is still pending.
func (c *Conn) enqueue(f *Frame) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	if c.holding {
		if len(c.held) >= c.srv.opts.WriteQueueSize {
			c.overflowAndUnlock()
			return false
		}
		c.held = append(c.held, f)
		c.mu.Unlock()
		return true
	}
	// Behind means a write is under way and more is already waiting
	// behind it; a writer that merely has not been scheduled yet is not
	// behind. Ticks are worthless late, so they are not queued there.
	pending := c.qlenLocked()
	if f.volatile && pending > 0 && (c.inWrite || pending >= maxPendingVolatile) {
		c.mu.Unlock()
		c.srv.stats.volatileDropped.Add(1)
		return false
	}
	if pending >= c.srv.opts.WriteQueueSize {
		c.overflowAndUnlock()
		return false
	}
	c.pushAndUnlock(f)
	return true
}

// overflowAndUnlock releases c.mu and closes a connection that let its
// queue fill.
func (c *Conn) overflowAndUnlock() {
	c.mu.Unlock()
	c.srv.stats.overflows.Add(1)
	go c.close(ReasonQueueOverflow, nil)
}

// qlenLocked is the number of frames waiting; the caller holds c.mu.
func (c *Conn) qlenLocked() int { return len(c.queue) - c.qhead }

// controlSlack is how far past SOCKET_WRITE_QUEUE control frames may go:
// they bypass the ordered stream (and a replay hold), but a client that
// never reads them is still dropped, not buffered for.
const controlSlack = 16

// enqueueControl queues a frame even during a replay hold: pongs and
// pings are not part of the ordered event stream.
func (c *Conn) enqueueControl(f *Frame) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if c.qlenLocked() >= c.srv.opts.WriteQueueSize+controlSlack {
		c.overflowAndUnlock()
		return
	}
	c.pushAndUnlock(f)
}

// queuePong answers a client's ping. Only the latest unanswered ping is
// answered, in the writer's next batch, so a flood of pings from a client
// that does not read costs 125 bytes, not a frame each.
func (c *Conn) queuePong(payload []byte) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.pong = append(c.pong[:0], payload...)
	c.pongDue = true
	c.startWriterAndUnlock()
}

// pushAndUnlock appends f to the queue, releases c.mu, and hands the
// connection to a writer if none is draining it.
func (c *Conn) pushAndUnlock(f *Frame) {
	if len(c.queue) == cap(c.queue) && c.qhead > 0 && c.qhead >= len(c.queue)/2 {
		// Reuse the drained head before growing; moving the live half
		// is paid for by the appends that filled the other half.
		n := copy(c.queue, c.queue[c.qhead:])
		clear(c.queue[n:])
		c.queue, c.qhead = c.queue[:n], 0
	}
	c.queue = append(c.queue, f)
	c.startWriterAndUnlock()
}

// startWriterAndUnlock releases c.mu and hands the connection to a writer
// if none is draining it.
func (c *Conn) startWriterAndUnlock() {
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		c.srv.schedule(c)
	}
}

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
				go c.flush(false)
				return
			}
		} else {
			timeout := c.srv.opts.WriteTimeout
			if quick {
				timeout = quickWriteTimeout
			}
			_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
			_, err = c.bufs.WriteTo(c.nc) // consumes what it wrote
		}
		if err != nil {
			var ne net.Error
			if quick && errors.As(err, &ne) && ne.Timeout() {
				go c.flush(false)
				return
			}
			c.bufs = nil
			c.close(ReasonTransportError, nil)
			return
		}
		clear(c.bufsBacking[:cap(c.bufsBacking)])
		c.bufs = c.bufs[:0]
		c.mu.Lock()
		c.inWrite = false
		c.mu.Unlock()
	}
}

// awaitWriter holds the reading of a client's next event while more
// than half its write queue is pending. A client that sends a burst of
// events, each answered, then waits for its own answers to go out instead
// of overflowing its queue and being dropped: back-pressure on the one
// sending the burst. Only that client's reading waits.
func (c *Conn) awaitWriter() {
	high, low := c.srv.opts.WriteQueueSize/2, c.srv.opts.WriteQueueSize/4
	if c.queueLen() <= high {
		return
	}
	deadline := time.Now().Add(c.srv.opts.WriteTimeout)
	for c.queueLen() > low && time.Now().Before(deadline) && !c.isClosed() {
		time.Sleep(200 * time.Microsecond)
	}
}

func (c *Conn) queueLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.qlenLocked()
}

// closeAfterFlushWith closes the connection once what is queued now has
// been written (or the write timeout passed).
func (c *Conn) closeAfterFlushWith(reason string, frame []byte) {
	go func() {
		deadline := time.Now().Add(c.srv.opts.WriteTimeout)
		for time.Now().Before(deadline) {
			c.mu.Lock()
			idle := !c.writing || c.closed
			c.mu.Unlock()
			if idle {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		c.close(reason, frame)
	}()
}

// close ends the connection once. closeFrame, when given, is written
// directly first (best effort) so the client learns the close code.
func (c *Conn) close(reason string, closeFrame []byte) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
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
	c.mu.Unlock()

	if polled {
		c.srv.poller.forget(c)
	}
	if closeFrame != nil {
		_ = c.nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
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

// consume parses and handles the complete frames at the start of buf and
// returns how many bytes it used; the rest is an incomplete frame to be
// completed by the next read. It reports stop when the connection was
// closed. Payloads are handled before consume returns, so they may point
// into buf.
func (c *Conn) consume(buf []byte) (used int, stop bool) {
	now := time.Now()
	used, stop = c.consumeFrames(buf, now)
	if stop {
		return used, true
	}
	if c.frag == nil && used == len(buf) {
		return used, false
	}
	// Something is unfinished: a frame still arriving or a fragmented
	// message. Either is held for a bounded time only.
	if c.fragSince.IsZero() {
		c.fragSince = now
	} else if now.Sub(c.fragSince) > incompleteTimeout {
		c.close(ReasonParseError, closeFrame(1008, "message not completed in time"))
		return used, true
	}
	return used, false
}

func (c *Conn) consumeFrames(buf []byte, now time.Time) (used int, stop bool) {
	max := int64(c.srv.opts.MaxPayload)
	for {
		h, hlen, ok := wsframe.Parse(buf[used:])
		if !ok {
			return used, false
		}
		switch {
		case !h.Masked:
			c.close(ReasonParseError, closeFrame(1002, "client frames must be masked"))
			return used, true
		case h.Rsv&0x3 != 0 || (h.Rsv1() && (h.Op == wsframe.OpContinuation || h.Op >= wsframe.OpClose)):
			// RFC 6455 5.2: no extension we negotiated defines these.
			c.close(ReasonParseError, closeFrame(1002, "reserved bits set"))
			return used, true
		case h.Length > max || int64(len(c.frag))+h.Length > max:
			c.srv.stats.tooLarge.Add(1)
			c.close(ReasonParseError, closeFrame(1009, "message exceeds maxPayload"))
			return used, true
		case h.Op >= wsframe.OpClose && (!h.Fin || h.Length > 125):
			c.close(ReasonParseError, closeFrame(1002, "malformed control frame"))
			return used, true
		}
		total := hlen + int(h.Length)
		if len(buf)-used < total {
			return used, false
		}
		payload := buf[used+hlen : used+total]
		used += total
		if h.Op != wsframe.OpClose && !c.admitFrame(now, h.Op, h.Length) {
			if c.frag != nil || h.Op == wsframe.OpContinuation {
				// A message with a hole in it cannot be handled.
				c.kick(closeFrame(1008, "message rate exceeded"))
			}
			if c.isClosed() {
				return used, true
			}
			continue
		}
		wsframe.Mask(payload, h.Mask)
		c.frame(h, payload)
		if c.isClosed() {
			return used, true
		}
		if c.frag == nil {
			c.fragSince = time.Time{}
		}
	}
}

// frame handles one WebSocket frame, assembling fragmented messages.
func (c *Conn) frame(h wsframe.Header, payload []byte) {
	switch h.Op {
	case wsframe.OpPing:
		c.queuePong(payload)
	case wsframe.OpPong:
	case wsframe.OpClose:
		c.close(ReasonTransportClose, closeFrame(1000, ""))
	case wsframe.OpText, wsframe.OpBinary:
		if c.frag != nil {
			c.close(ReasonParseError, closeFrame(1002, "new message inside a fragmented one"))
			return
		}
		if h.Fin {
			c.message(h.Op, h.Rsv1(), payload)
			return
		}
		// The payload points into the read buffer: keep a copy.
		c.frag = append(make([]byte, 0, len(payload)*2), payload...)
		c.fragOp, c.fragRsv1 = h.Op, h.Rsv1()
	case wsframe.OpContinuation:
		if c.frag == nil {
			c.close(ReasonParseError, closeFrame(1002, "continuation without a message"))
			return
		}
		c.frag = append(c.frag, payload...)
		if h.Fin {
			msg := c.frag
			c.frag = nil
			c.message(c.fragOp, c.fragRsv1, msg)
		}
	default:
		c.close(ReasonParseError, closeFrame(1002, "unknown opcode"))
	}
}

func (c *Conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// readBlocking reads with a goroutine of its own until the connection
// ends: the fallback where the event-driven reader is not available.
func (c *Conn) readBlocking(src io.Reader) {
	buf := make([]byte, 0, 4096)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := src.Read(buf[len(buf):cap(buf)])
		if n > 0 {
			c.lastRead.Store(time.Now().UnixNano())
			buf = buf[:len(buf)+n]
			used, stop := c.consume(buf)
			if stop {
				return
			}
			buf = buf[:copy(buf, buf[used:])]
		}
		if err != nil {
			c.close(readErrReason(err), nil)
			return
		}
	}
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

func readErrReason(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ReasonPingTimeout
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return ReasonTransportClose
	}
	return ReasonTransportError
}

func closeFrame(code uint16, reason string) []byte {
	body := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(body, code)
	body = append(body, reason...)
	return newFrame(wsframe.OpClose, body).plain
}

// message handles one complete WebSocket message.
func (c *Conn) message(op byte, compressed bool, data []byte) {
	if compressed {
		if !c.deflate {
			c.close(ReasonParseError, closeFrame(1002, "compressed frame without permessage-deflate"))
			return
		}
		now := time.Now()
		budget := c.inflateBudget(now)
		out, err := inflate(data, budget)
		if errors.Is(err, errTooLarge) && budget < c.srv.opts.MaxPayload {
			// Over what the socket may have inflated now, not over the
			// limit: refused like a frame over its rate.
			c.srv.stats.refusedFrames.Add(1)
			return
		}
		if errors.Is(err, errTooLarge) {
			c.srv.stats.tooLarge.Add(1)
			c.close(ReasonParseError, closeFrame(1009, "message exceeds maxPayload"))
			return
		}
		if err != nil {
			c.close(ReasonParseError, closeFrame(1007, "bad compressed data"))
			return
		}
		c.chargeInflated(now, len(out))
		data = out
	}
	if op == wsframe.OpText && !utf8.Valid(data) {
		c.close(ReasonParseError, closeFrame(1007, "text message is not valid UTF-8"))
		return
	}
	c.srv.stats.framesIn.Add(1)
	if op == wsframe.OpBinary {
		c.reportError("", ErrBinaryUnsupported)
		return
	}
	if len(data) == 0 {
		c.reportError("", decodeErr("empty message"))
		return
	}
	switch data[0] {
	case eioPong:
		if sent := c.pingSent.Swap(0); sent != 0 && c.srv.opts.OnPong != nil {
			c.srv.opts.OnPong(c, time.Duration(time.Now().UnixNano()-sent))
		}
	case eioPing, eioNoop, eioUpgrade:
		// The read itself proved the client alive. Engine.IO 4 clients
		// do not send pings over WebSocket; no answer is owed.
	case eioClose:
		c.close(ReasonTransportClose, closeFrame(1000, ""))
	case eioMessage:
		c.packet(data[1:])
	default:
		c.reportError("", decodeErr("unknown Engine.IO packet type %q", data[0]))
	}
}

// packet handles one Socket.IO packet.
func (c *Conn) packet(data []byte) {
	p, err := DecodePacket(data)
	if err != nil {
		c.reportError("", err)
		return
	}
	if p.Namespace != defaultNamespace {
		// The answer echoes the namespace: a long one is not worth it.
		if p.Type == PacketConnect && len(p.Namespace) <= maxNamespaceEcho {
			c.enqueueControl(newFrame(wsframe.OpText, connectError(p.Namespace, "Invalid namespace")))
		}
		return
	}
	switch p.Type {
	case PacketConnect:
		if c.connected.Load() {
			return
		}
		c.srv.connect(c, p.Data)
	case PacketDisconnect:
		if c.connected.Load() {
			c.close(ReasonClientDisconnect, closeFrame(1000, ""))
		}
	case PacketEvent:
		if !c.connected.Load() {
			return // Socket.IO drops events sent before CONNECT
		}
		name, arg, err := splitEvent(p.Data)
		if err == errUnknownName {
			c.srv.dispatch(c, name, nil, p.ID)
			return
		}
		if err != nil {
			c.reportError(name, err)
			return
		}
		c.srv.dispatch(c, name, arg, p.ID)
		c.awaitWriter()
	case PacketAck:
		// The server asks for no acknowledgements yet; a stray one is harmless.
	}
}

// maxNamespaceEcho bounds the namespace a connect_error repeats back.
const maxNamespaceEcho = 256

func connectError(nsp, msg string) []byte {
	b := []byte{eioMessage, '0' + byte(PacketConnectError)}
	b = append(b, nsp...)
	b = append(b, ',')
	m, _ := json.Marshal(map[string]string{"message": msg})
	return append(b, m...)
}

// reportError tells the client about a refused packet.
func (c *Conn) reportError(event string, err error) {
	c.srv.stats.badPackets.Add(1)
	if c.srv.opts.OnPacketError != nil && c.connected.Load() {
		c.srv.opts.OnPacketError(c, event, err)
	}
}

// ackFunc builds the acknowledgement callback for a packet id; it answers
// at most once.
func (c *Conn) ackFunc(id int64) Ack {
	if id < 0 {
		return nil
	}
	var done atomic.Bool
	return func(payload any) {
		if !done.CompareAndSwap(false, true) {
			return
		}
		b, err := json.Marshal(payload)
		if err != nil {
			b = []byte(`{"ok":false,"error":{"code":"INTERNAL","message":"unencodable reply"}}`)
		}
		pkt := appendAck(make([]byte, 0, len(b)+24), id, b)
		c.enqueue(newFrame(wsframe.OpText, pkt))
	}
}

// handshake writes the Engine.IO open packet.
func (c *Conn) openPacket(sid string) []byte {
	var b bytes.Buffer
	b.WriteByte(eioOpen)
	_ = json.NewEncoder(&b).Encode(map[string]any{
		"sid":          sid,
		"upgrades":     []string{},
		"pingInterval": c.srv.opts.PingInterval.Milliseconds(),
		"pingTimeout":  c.srv.opts.PingTimeout.Milliseconds(),
		"maxPayload":   c.srv.opts.MaxPayload,
	})
	return bytes.TrimRight(b.Bytes(), "\n")
}

// replay queues recovered packets ahead of every live frame: live frames
// that arrived during the lookup waited in held and follow, minus any the
// replay already carried.
func (c *Conn) replay(records []Record) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	var lastReplayed uint64
	for _, r := range records {
		c.queue = append(c.queue, newFrame(wsframe.OpText, r.Packet))
		lastReplayed = r.Offset
	}
	for _, f := range c.held {
		if f.seq != 0 && f.seq <= lastReplayed {
			continue
		}
		c.queue = append(c.queue, f)
	}
	c.held = nil
	c.holding = false
	start := !c.writing && c.qlenLocked() > 0
	if start {
		c.writing = true
	}
	c.mu.Unlock()
	if start {
		c.srv.schedule(c)
	}
}

func formatOffset(seq uint64) string { return strconv.FormatUint(seq, 10) }

func parseOffset(s string) (uint64, bool) {
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil
}

// NoTicks is the SetTickInterval of a client that takes no scroll_tick.
const NoTicks time.Duration = -1

// SetTickInterval sets how often the connection gets the volatile events
// (scroll_tick): 0 for every one, NoTicks for none, d for at most one per d.
// A client that draws the position from the anchor and its synced clock
// needs none, and every tick it skips is a packet the server never sends.
func (c *Conn) SetTickInterval(d time.Duration) {
	c.tickEvery.Store(int64(d))
	c.tickDue.Store(0)
}

// wantsTick reports whether a volatile frame at now goes to the connection,
// and books the next one. The schedule advances from when a tick was due,
// not from when it came, so a rate of 100 ms over 16 ms ticks averages 100
// ms instead of drifting towards the next multiple of 16.
func (c *Conn) wantsTick(now int64) bool {
	every := c.tickEvery.Load()
	switch {
	case every == 0:
		return true
	case every < 0:
		return false
	}
	due := c.tickDue.Load()
	if now < due {
		return false
	}
	next := due + every
	if next <= now {
		next = now + every // far behind (or the first tick): start afresh
	}
	c.tickDue.Store(next)
	return true
}
