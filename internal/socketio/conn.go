package socketio

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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

// Conn is one client's socket on the default namespace.
//
// Reading happens on one goroutine at a time per connection, which also
// runs the event handlers, so a client's events are handled in the order
// it sent them. On Linux that goroutine exists only while the socket has
// bytes to read (see poller); elsewhere it lives as long as the
// connection. Writing happens on a shared write worker, or on a
// goroutine of the connection's own while its socket is full. On Linux
// an idle connection therefore holds no goroutine and no buffer.
//
// The connection's code is split by concern: handshake.go (the HTTP
// upgrade and the Engine.IO open), read.go (frames in), dispatch.go
// (Engine.IO and Socket.IO packets, acks), queue.go and write.go (frames
// out), close.go (closing and lingering), recovery.go (resuming a dropped
// socket) and ticks.go (the per-client tick rate).
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
	pong    []byte
	pongDue bool
	inWrite bool // the writer holds a batch not yet fully written
	// partial: the writer gave up with part of a batch unwritten, so the
	// wire may end inside a frame and no close frame may follow.
	partial bool
	// progress, when someone waits on the writer (awaitLocked), is closed
	// at its next step; signalLocked closes it.
	progress chan struct{}
	// closeBy is when a closing connection's last writes must be done.
	closeBy  time.Time
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
