// Package socketio is BandSync's Socket.IO v4 server: Engine.IO protocol 4
// and Socket.IO protocol 5 over WebSocket only, for the default namespace.
//
// It is written by hand, on gobwas/ws for the WebSocket handshake, because
// the product lives on its fan-out path and no Go library does that path
// well: the Go port of socket.io cost 2-2.5x Node's CPU here. Owning the
// framing lets a broadcast encode one WebSocket frame (header included)
// and hand the same bytes to every member, lets a connection's writer
// coalesce everything pending into one vectored write, and lets ticks be
// dropped for a connection that is behind instead of queued.
//
// The official socket.io-client@4 is the judge of compatibility; the
// end-to-end tests in test/e2e drive it against the built server.
package socketio

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bandsync/bandsync/internal/wsframe"
)

// Ack answers a client's acknowledgement request. It is nil when the
// client did not ask for one; calling it more than once sends only the
// first answer.
type Ack func(payload any)

// Handler handles one client event. data is the event's first argument as
// raw JSON (nil when the client sent none), for the handler to decode into
// its own type.
type Handler func(c *Conn, data json.RawMessage, ack Ack)

// Options configure a Server. Zero values take the defaults of
// docs/protocol.md.
type Options struct {
	PingInterval   time.Duration // 2500 ms
	PingTimeout    time.Duration // 5000 ms
	ConnectTimeout time.Duration // time allowed between the handshake and the Socket.IO CONNECT (10 s)
	WriteTimeout   time.Duration // a write blocked this long drops the connection (10 s)
	MaxPayload     int           // largest message a client may send, bytes (1,000,000)
	// WriteQueueSize is the number of frames a connection may have
	// pending before it is dropped as too slow (256).
	WriteQueueSize int
	// MaxFrameRate is how many WebSocket frames a client may send per
	// second, control frames included, before frames are dropped unread;
	// one that sends twice as many for a second is closed (1000).
	MaxFrameRate int
	// MaxReadRate is how many message bytes per second (inflated size
	// included) a client may have read and parsed (2 MB or 2 x
	// MaxPayload, whichever is more).
	MaxReadRate int
	// MaxConnections caps the WebSocket connections held at once; past
	// it handshakes get 503 (default: the file-descriptor limit less a
	// reserve for /health, Redis and the rest; -1: no cap).
	MaxConnections int
	// MaxConnectionsPerAddr caps them per client IP, loopback exempt
	// (512, ten bands behind one venue NAT; -1: no cap).
	MaxConnectionsPerAddr int
	// MaxWriteBatch bounds the frames coalesced into one write (100).
	MaxWriteBatch int
	// CompressionThreshold: frames smaller than this are never
	// compressed (1024).
	CompressionThreshold int
	// DisableCompression turns permessage-deflate negotiation off.
	DisableCompression bool
	// Recovery enables connection-state recovery when non-nil.
	Recovery RecoveryStore
	// CheckOrigin decides whether a WebSocket upgrade's Origin header is
	// acceptable. nil accepts every origin.
	CheckOrigin func(origin string) bool
	Logger      *slog.Logger

	// OnConnect runs when a socket has connected (or recovered), before
	// any of its events are dispatched.
	OnConnect func(c *Conn)
	// OnDisconnect runs once when a connected socket is gone. willRecover
	// tells whether its session was kept for recovery.
	OnDisconnect func(c *Conn, reason string, willRecover bool)
	// OnPacketError runs when a connected client sends a packet the
	// server refuses (malformed, binary, bad event name).
	OnPacketError func(c *Conn, event string, err error)
	// OnUnknownEvent runs for events without a handler.
	OnUnknownEvent func(c *Conn, event string, ack Ack)
	// OnPong reports the round trip of an Engine.IO ping, a free latency
	// sample every pingInterval per connection.
	OnPong func(c *Conn, rtt time.Duration)
	// OnReject reports a refused handshake under one of
	// protocol.RejectReasons.
	OnReject func(reason string)
	// OnFramesOut reports frames written, once per vectored write.
	OnFramesOut func(n int)
	// Middleware runs before every handler; returning false drops the
	// event (the middleware has answered the client).
	Middleware func(c *Conn, event string, ack Ack) bool
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.PingInterval, 2500*time.Millisecond)
	def(&o.PingTimeout, 5000*time.Millisecond)
	def(&o.ConnectTimeout, 10*time.Second)
	def(&o.WriteTimeout, 10*time.Second)
	defInt(&o.MaxPayload, 1_000_000)
	defInt(&o.WriteQueueSize, 256)
	defInt(&o.MaxFrameRate, 1000)
	defInt(&o.MaxConnections, defaultMaxConnections())
	defInt(&o.MaxConnectionsPerAddr, 512)
	// 100 events a second at the 16 KB event limit is 1.6 MB/s: an honest
	// client never comes near 2 MB/s, whatever maxPayload is set to.
	defInt(&o.MaxReadRate, max(2*o.MaxPayload, 2<<20))
	defInt(&o.MaxWriteBatch, 100)
	defInt(&o.CompressionThreshold, 1024)
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// Server accepts Socket.IO connections and routes their events.
type Server struct {
	opts     Options
	handlers map[string]Handler
	rooms    *roomSet

	seed  maphash.Seed
	conns [connShards]connShard

	// recMu orders recorded emits: an offset is assigned, the frame
	// encoded and the packet stored in one step, so stored offsets are
	// contiguous and in order.
	recMu sync.Mutex
	seq   uint64

	// poller reads connections when they are readable (nil: a goroutine
	// per connection reads instead).
	poller *poller

	// writeq feeds connections with pending frames to the write
	// workers; handing over a pointer costs no allocation, unlike
	// starting a goroutine per flush.
	writeq chan *Conn

	draining  atomic.Bool
	admission admission
	stats     counters
	stop      chan struct{}
	stopOnce  sync.Once
	wg        sync.WaitGroup
}

const connShards = 16

type connShard struct {
	mu    sync.Mutex
	conns map[string]*Conn
}

type counters struct {
	active, total                                      atomic.Int64
	framesIn, framesOut, bytesOut, writes              atomic.Uint64
	volatileDropped, overflows, badPackets, tooLarge   atomic.Uint64
	recovered, rejected, refusedFrames, replaysSkipped atomic.Uint64
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	Connections     int64  `json:"connections"`
	TotalConnects   int64  `json:"totalConnections"`
	FramesIn        uint64 `json:"framesIn"`
	FramesOut       uint64 `json:"framesOut"`
	Writes          uint64 `json:"writes"` // vectored writes: FramesOut/Writes is the coalescing factor
	BytesOut        uint64 `json:"bytesOut"`
	VolatileDropped uint64 `json:"volatileDropped"`
	QueueOverflows  uint64 `json:"queueOverflows"`
	BadPackets      uint64 `json:"badPackets"`
	TooLarge        uint64 `json:"tooLarge"`
	Recovered       uint64 `json:"recovered"`
	Rejected        uint64 `json:"rejected"`
	RefusedFrames   uint64 `json:"refusedFrames"`  // dropped over a socket's frame or byte budget
	ReplaysSkipped  uint64 `json:"replaysSkipped"` // recoveries that got a fresh state, their replay too long
}

// NewServer builds a server. Register handlers with On before serving.
func NewServer(opts Options) *Server {
	opts.defaults()
	s := &Server{opts: opts, handlers: make(map[string]Handler), rooms: newRoomSet(), seed: maphash.MakeSeed(), stop: make(chan struct{})}
	for i := range s.conns {
		s.conns[i].conns = make(map[string]*Conn)
	}
	s.writeq = make(chan *Conn, writeQueueCap)
	workers := 2 * runtime.GOMAXPROCS(0)
	s.wg.Add(1 + workers)
	if p, err := newPoller(); err == nil {
		s.poller = p
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := p.run(s.stop); err != nil {
				s.opts.Logger.Error("socket reads stopped: the epoll set failed", "err", err)
			}
		}()
	} else {
		s.opts.Logger.Info("reading each connection with its own goroutine", "reason", err)
	}
	go s.pingLoop()
	for range workers {
		go s.writeWorker()
	}
	return s
}

// writeQueueCap bounds the connections waiting for a write worker; past
// it a connection gets a goroutine of its own rather than waiting.
const writeQueueCap = 1 << 16

func (s *Server) writeWorker() {
	defer s.wg.Done()
	for {
		select {
		case c := <-s.writeq:
			c.flush(true)
		case <-s.stop:
			return
		}
	}
}

// schedule hands a connection with pending frames to a write worker.
func (s *Server) schedule(c *Conn) {
	select {
	case s.writeq <- c:
	default:
		go c.flush(false)
	}
}

// On registers the handler of an event. It must be called before the
// server accepts connections.
func (s *Server) On(event string, h Handler) { s.handlers[event] = h }

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Connections: s.stats.active.Load(), TotalConnects: s.stats.total.Load(),
		FramesIn: s.stats.framesIn.Load(), FramesOut: s.stats.framesOut.Load(), Writes: s.stats.writes.Load(), BytesOut: s.stats.bytesOut.Load(),
		VolatileDropped: s.stats.volatileDropped.Load(), QueueOverflows: s.stats.overflows.Load(),
		BadPackets: s.stats.badPackets.Load(), TooLarge: s.stats.tooLarge.Load(),
		Recovered: s.stats.recovered.Load(), Rejected: s.stats.rejected.Load(),
		RefusedFrames: s.stats.refusedFrames.Load(), ReplaysSkipped: s.stats.replaysSkipped.Load(),
	}
}

// Conn returns the connected socket with the given id.
func (s *Server) Conn(id string) (*Conn, bool) {
	sh := s.connShard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c, ok := sh.conns[id]
	return c, ok
}

func (s *Server) connShard(id string) *connShard {
	return &s.conns[maphash.String(s.seed, id)%connShards]
}

func (s *Server) register(c *Conn) {
	sh := s.connShard(c.id)
	sh.mu.Lock()
	sh.conns[c.id] = c
	sh.mu.Unlock()
}

func (s *Server) forget(c *Conn) {
	if c.id == "" {
		return
	}
	sh := s.connShard(c.id)
	sh.mu.Lock()
	if sh.conns[c.id] == c {
		delete(sh.conns, c.id)
	}
	sh.mu.Unlock()
}

func (s *Server) connected(c *Conn) {
	s.track(c)
	if s.opts.OnConnect != nil {
		s.opts.OnConnect(c)
	}
}

func (s *Server) disconnected(c *Conn, reason string, rooms []string) {
	willRecover := false
	if s.opts.Recovery != nil && recoverable(reason) && c.pid != "" {
		err := s.opts.Recovery.Save(context.Background(), c.pid, Saved{SID: c.id, Rooms: rooms, At: time.Now()})
		willRecover = err == nil
	}
	if !willRecover {
		s.untrack(c)
	}
	if s.opts.OnDisconnect != nil {
		s.opts.OnDisconnect(c, reason, willRecover)
	}
}

// dispatch runs the handler of an event on the connection's goroutine. A
// panicking handler is logged and answered with INTERNAL; it never takes
// the process down.
func (s *Server) dispatch(c *Conn, event string, data json.RawMessage, id int64) {
	ack := c.ackFunc(id)
	defer func() {
		if v := recover(); v != nil {
			s.opts.Logger.Error("panic in event handler", "event", event, "panic", v, "stack", string(debug.Stack()))
			if s.opts.OnPacketError != nil {
				s.opts.OnPacketError(c, event, fmt.Errorf("internal error handling %q", event))
			}
		}
	}()
	if s.opts.Middleware != nil && !s.opts.Middleware(c, event, ack) {
		return
	}
	h := s.handlers[event]
	if h == nil {
		if s.opts.OnUnknownEvent != nil {
			s.opts.OnUnknownEvent(c, event, ack)
		}
		return
	}
	h(c, data, ack)
}

type emitKind int

const (
	kindRecorded emitKind = iota // kept for recovery, carries an offset
	kindReply                    // queued, not kept
	kindVolatile                 // dropped when the connection is behind
)

// encode builds the frame of an event. For recorded emits it assigns the
// next offset and stores the packet, all under recMu.
func (s *Server) encode(target, event string, payload any, kind emitKind) (*Frame, error) {
	j := getJSON()
	defer j.put()
	body, err := j.marshal(payload)
	if err != nil {
		return nil, err
	}
	// A shared recovery store records events itself (SharedRecovery), so
	// nothing gets an offset here.
	if kind != kindRecorded || s.opts.Recovery == nil || target == "" || s.shared() != nil {
		f := eventFrame(event, body, "")
		f.volatile = kind == kindVolatile
		return f, nil
	}
	s.recMu.Lock()
	defer s.recMu.Unlock()
	s.seq++
	f := eventFrame(event, body, formatOffset(s.seq))
	f.seq = s.seq
	if err := s.opts.Recovery.Append(context.Background(), target, s.seq, f.payload()); err != nil {
		s.opts.Logger.Warn("recovery store append failed", "err", err)
	}
	return f, nil
}

// jsonBuf encodes payloads into a reused buffer: eventFrame copies the
// bytes into the frame, the one allocation an event needs. json.Marshal
// would allocate its result on top. A json.Encoder writes what Marshal
// does (HTML escaped) and a newline.
type jsonBuf struct {
	b   bytes.Buffer
	enc *json.Encoder
	raw []byte // a JSONAppender's
}

// JSONAppender is a payload that encodes itself, for the events sent most
// often (the tick): its JSON goes straight to a reused buffer, with none of
// encoding/json's reflection and re-validation. It must append valid JSON.
type JSONAppender interface {
	AppendJSON(dst []byte) []byte
}

var jsonBufs = sync.Pool{New: func() any {
	j := &jsonBuf{}
	j.enc = json.NewEncoder(&j.b)
	return j
}}

func getJSON() *jsonBuf { return jsonBufs.Get().(*jsonBuf) }

// put returns j to the pool unless an outsized payload (a song library)
// grew its buffer: that one goes to the GC.
func (j *jsonBuf) put() {
	if j.b.Cap() <= 64<<10 && cap(j.raw) <= 64<<10 {
		j.b.Reset()
		jsonBufs.Put(j)
	}
}

// marshal encodes payload into j, which is empty (fresh, or reset by
// put); the bytes are valid until j is put back. A
// json.RawMessage is used as it is, and nil is no argument at all.
func (j *jsonBuf) marshal(payload any) ([]byte, error) {
	switch p := payload.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		return p, nil
	case JSONAppender:
		j.raw = p.AppendJSON(j.raw[:0])
		return j.raw, nil
	}
	if err := j.enc.Encode(payload); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(j.b.Bytes(), []byte{'\n'}), nil
}

func (s *Server) emit(target string, conns []*Conn, event string, payload any, kind emitKind) error {
	f, err := s.encode(target, event, payload, kind)
	if err != nil {
		return err
	}
	for _, c := range conns {
		c.enqueue(f)
	}
	return nil
}

// Broadcast sends an event to every member of room, kept for recovery.
func (s *Server) Broadcast(room, event string, payload any) error {
	return s.broadcast(room, event, payload, kindRecorded)
}

// BroadcastVolatile sends an event to every member of room that is not
// behind; it is never replayed.
func (s *Server) BroadcastVolatile(room, event string, payload any) error {
	return s.broadcast(room, event, payload, kindVolatile)
}

func (s *Server) broadcast(room, event string, payload any, kind emitKind) error {
	if kind != kindRecorded && s.rooms.size(room) == 0 {
		return nil
	}
	f, err := s.encode(room, event, payload, kind)
	if err != nil {
		return err
	}
	s.BroadcastFrame(room, f)
	return nil
}

// BroadcastFrame queues an already encoded frame to every member of room;
// a volatile frame (a tick) only to those that want it now.
func (s *Server) BroadcastFrame(room string, f *Frame) int {
	if f.volatile {
		now := time.Now().UnixNano()
		return s.rooms.each(room, func(c *Conn) {
			if c.wantsTick(now) {
				c.enqueue(f)
			}
		})
	}
	return s.rooms.each(room, func(c *Conn) { c.enqueue(f) })
}

// EmitAll sends an event to every connected socket, encoded once; it is
// not kept for recovery.
func (s *Server) EmitAll(event string, payload any) error {
	f, err := s.encode("", event, payload, kindReply)
	if err != nil {
		return err
	}
	for i := range s.conns {
		sh := &s.conns[i]
		sh.mu.Lock()
		for _, c := range sh.conns {
			c.enqueue(f)
		}
		sh.mu.Unlock()
	}
	return nil
}

// RoomSize is the number of this instance's sockets in room.
func (s *Server) RoomSize(room string) int { return s.rooms.size(room) }

// pingFrame is the Engine.IO ping, shared by every connection.
var pingFrame = newFrame(wsframe.OpText, []byte{eioPing})

// pingLoop sends the Engine.IO ping to every connection once per
// pingInterval, one shard of connections at a time so pings go out
// spread over the interval rather than in one burst. At every step it
// also closes the connections silent for longer than pingInterval +
// pingTimeout (pongs count), so a dead phone is dropped within a
// sixteenth of an interval of its deadline.
func (s *Server) pingLoop() {
	defer s.wg.Done()
	step := s.opts.PingInterval / connShards
	t := time.NewTicker(step)
	defer t.Stop()
	next := 0
	var batch []*Conn
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		deadline := now - int64(s.opts.PingInterval+s.opts.PingTimeout)
		for i := range s.conns {
			sh := &s.conns[i]
			sh.mu.Lock()
			for _, c := range sh.conns {
				if i == next || c.lastRead.Load() < deadline {
					batch = append(batch, c)
				}
			}
			sh.mu.Unlock()
		}
		for _, c := range batch {
			if c.lastRead.Load() < deadline {
				// Closing runs the disconnect hooks, which may save
				// recovery state to Redis and detach the member through
				// the store: never on this loop, or one slow store call
				// (or a venue's Wi-Fi dropping 200 phones at once) would
				// delay every other socket's ping.
				if c.timingOut.CompareAndSwap(false, true) {
					go c.close(ReasonPingTimeout, nil)
				}
				continue
			}
			c.pingSent.Store(now)
			c.enqueueControl(pingFrame)
		}
		next = (next + 1) % connShards
		clear(batch)
		batch = batch[:0]
	}
}

// Shutdown stops accepting connections and closes every socket after
// flushing what is queued to it. Clients see the transport close and
// reconnect on their own, to this server's successor or a sibling. It
// returns when all sockets are closed or ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	var all []*Conn
	for i := range s.conns {
		sh := &s.conns[i]
		sh.mu.Lock()
		for _, c := range sh.conns {
			all = append(all, c)
		}
		sh.mu.Unlock()
	}
	for _, c := range all {
		c.closeAfterFlushWith(ReasonServerShutdown, closeFrame(1001, "server shutting down"))
	}
	for _, c := range all {
		select {
		case <-c.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.stopOnce.Do(func() { close(s.stop) })
	// The poller, the ping loop and the write workers end on s.stop; one
	// that does not is a bug, reported as the deadline rather than a hang.
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Draining reports whether Shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }
