// Package benchclient is the client side of bandsync-bench: a lean
// Socket.IO v4 client over WebSocket (Engine.IO 4 text frames written by
// hand on gobwas/ws), the parsing needed to read BandSync's events without
// encoding/json, exact percentiles, and a minimal relay server that gives
// the machine's fan-out floor.
//
// It is deliberately not a general Socket.IO client: one connection costs
// a goroutine, a 1 KiB read buffer and a message buffer, so one process
// can hold tens of thousands of them and still not be the bottleneck.
package benchclient

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/bandsync/bandsync/internal/wsframe"
)

// readBufferSize is small on purpose: messages larger than the buffer are
// read straight into the message buffer, and idle connections are the
// ones that count in thousands.
const readBufferSize = 1024

// SocketURL turns a server's base URL (http://host:port) into its
// Engine.IO WebSocket endpoint.
func SocketURL(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("unsupported scheme %q (want http, https, ws or wss)", u.Scheme)
	}
	if u.Host == "" {
		return "", fmt.Errorf("URL %q has no host", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/socket.io/"
	u.RawQuery = "EIO=4&transport=websocket"
	return u.String(), nil
}

// Handler receives each Socket.IO packet (the text after the Engine.IO "4")
// with the time its frame was read. pkt is only valid during the call,
// and the call must be quick: on Linux one goroutine serves many
// connections.
type Handler func(now time.Time, pkt []byte)

// Conn is one Socket.IO client connection on the default namespace.
//
// Until Start it is a net.Conn read through a bufio.Reader (the handshake).
// Start hands reading to an epoll loop shared by many connections (Linux)
// or to a goroutine of its own (elsewhere, or with DialOptions.GoroutineReader).
type Conn struct {
	// SID is the socket id from the server's CONNECT reply.
	SID string

	nc net.Conn
	fr frameReader

	h               Handler
	closed          func(error)
	goroutineReader bool            // see DialOptions
	onPing          func(time.Time) // see DialOptions

	// Epoll mode (Linux): the socket is a raw descriptor owned by a poller.
	fd      int
	pending []byte // bytes of an incomplete frame, kept between reads
	frag    []byte // a fragmented message being reassembled
	fragOp  ws.OpCode

	wmu     sync.Mutex
	wbuf    []byte
	dead    bool // no more writes: the descriptor is closed or closing
	rawFD   bool // writes go to fd rather than nc
	started bool

	done chan struct{}
	err  error
}

// DialOptions says how Dial connects.
type DialOptions struct {
	// Local is the source address, nil for the kernel's choice.
	Local net.IP
	// Timeout bounds the whole exchange: dial, upgrade, open and CONNECT.
	Timeout time.Duration
	// GoroutineReader makes the connection read on a goroutine of its own
	// rather than on the shared epoll loops (Linux). The goroutine way is
	// the simple one, kept to compare against.
	GoroutineReader bool
	// OnPing, when not nil, is called with the arrival time of every
	// Engine.IO ping before it is answered (the mass-drop measurement
	// watches the server's ping cadence).
	OnPing func(now time.Time)
}

// Dial connects to wsURL (see SocketURL) and completes the Engine.IO open
// and Socket.IO CONNECT, so the returned connection is ready for events.
func Dial(wsURL string, o DialOptions) (*Conn, error) {
	timeout := o.Timeout
	d := ws.Dialer{Timeout: timeout, ReadBufferSize: readBufferSize, WriteBufferSize: 512}
	if o.Local != nil {
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: o.Local}}
		d.NetDial = nd.DialContext
	}
	// A background context keeps gobwas/ws from starting a watcher
	// goroutine per dial; Timeout bounds the handshake instead.
	nc, br, _, err := d.Dial(context.Background(), wsURL)
	if err != nil {
		return nil, err
	}
	if br == nil {
		br = bufio.NewReaderSize(nc, readBufferSize)
	}
	// br (when gobwas/ws returns one) comes from its pool and holds bytes
	// the server sent after the upgrade; it is kept rather than returned.
	c := &Conn{nc: nc, fr: frameReader{br: br}, fd: -1, done: make(chan struct{}), goroutineReader: o.GoroutineReader, onPing: o.OnPing}
	if err := c.handshake(timeout); err != nil {
		_ = nc.Close()
		return nil, err
	}
	return c, nil
}

func (c *Conn) handshake(timeout time.Duration) error {
	_ = c.nc.SetDeadline(time.Now().Add(timeout))
	defer func() { _ = c.nc.SetDeadline(time.Time{}) }()
	opened := false
	for {
		op, p, err := c.fr.next()
		if err != nil {
			return fmt.Errorf("handshake: %w", err)
		}
		if op == ws.OpClose {
			return errors.New("handshake: server closed the connection")
		}
		if op != ws.OpText || len(p) == 0 {
			continue
		}
		switch {
		case p[0] == '0' && !opened:
			opened = true
			if err := c.WriteText([]byte("40")); err != nil {
				return err
			}
		case p[0] == '2':
			if err := c.pong(p); err != nil {
				return err
			}
		case len(p) >= 2 && p[0] == '4' && p[1] == '0':
			sid, ok := String(p[2:], "sid")
			if !ok {
				return fmt.Errorf("handshake: CONNECT reply without sid: %q", p)
			}
			c.SID = sid
			return nil
		case len(p) >= 2 && p[0] == '4' && p[1] == '4':
			return fmt.Errorf("handshake: CONNECT refused: %s", p[2:])
		}
	}
}

// Start begins reading the connection until it closes, answering
// Engine.IO pings and WebSocket pings and passing every Socket.IO packet
// to h (which may be nil). closed, when not nil, runs once with the reason
// the connection ended. Start must be called once.
func (c *Conn) Start(h Handler, closed func(err error)) {
	c.h, c.closed = h, closed
	c.wmu.Lock()
	c.started = true
	c.wmu.Unlock()
	if !c.goroutineReader && c.startPolled() {
		return
	}
	go func() {
		c.err = c.readLoop()
		c.finish()
	}()
}

func (c *Conn) finish() {
	close(c.done)
	if c.closed != nil {
		c.closed(c.err)
	}
}

func (c *Conn) readLoop() error {
	for {
		op, p, err := c.fr.next()
		if err != nil {
			return err
		}
		if err := c.dispatch(time.Now(), op, p); err != nil {
			return err
		}
	}
}

var (
	errClosedByServer = errors.New("server closed the connection")
	errClosedLocally  = errors.New("closed by the bench")
)

// dispatch handles one complete message.
func (c *Conn) dispatch(now time.Time, op ws.OpCode, p []byte) error {
	switch op {
	case ws.OpText:
		if len(p) == 0 {
			return nil
		}
		switch p[0] {
		case '4':
			if c.h != nil {
				c.h(now, p[1:])
			}
		case '2':
			if c.onPing != nil {
				c.onPing(now)
			}
			return c.pong(p)
		case '1':
			return errors.New("server closed the Engine.IO session")
		}
	case ws.OpPing:
		return c.write(ws.OpPong, p)
	case ws.OpClose:
		_ = c.write(ws.OpClose, p)
		return errClosedByServer
	}
	return nil
}

// pong answers an Engine.IO ping ("2", possibly with data) with "3" and
// the same data.
func (c *Conn) pong(ping []byte) error {
	var b [64]byte
	out := append(b[:0], '3')
	out = append(out, ping[1:]...)
	return c.WriteText(out)
}

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// WriteText sends one text frame. It is safe for concurrent use.
func (c *Conn) WriteText(p []byte) error { return c.write(ws.OpText, p) }

var errWriteClosed = errors.New("benchclient: write on a closed connection")

func (c *Conn) write(op ws.OpCode, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.dead {
		return errWriteClosed
	}
	c.wbuf = appendClientFrame(c.wbuf[:0], op, p)
	var err error
	if c.rawFD {
		err = writeFD(c.fd, c.wbuf)
	} else {
		_, err = c.nc.Write(c.wbuf)
	}
	if cap(c.wbuf) > 4096 {
		c.wbuf = nil // a rare large write should not pin memory
	}
	return err
}

// Emit sends the event name with one JSON argument.
func (c *Conn) Emit(name string, arg []byte) error {
	var b [256]byte
	return c.WriteText(wsframe.AppendEvent(b[:0], name, arg, ""))
}

// Close closes the connection; Done is closed soon after. The close is
// abortive (a reset, SO_LINGER 0): a graceful one would leave the port in
// TIME_WAIT for a minute, and back-to-back runs of thousands of
// connections would run out of ephemeral ports.
func (c *Conn) Close() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.dead {
		return nil
	}
	c.dead = true
	switch {
	case c.rawFD:
		// The poller owns the descriptor: shutting it down wakes the
		// poller, which unregisters and closes it (sending the reset).
		// Closing it here could let the number be reused under the
		// poller's feet.
		return shutdownFD(c.fd)
	case !c.started:
		c.err = errClosedLocally
		lingerZero(c.nc)
		err := c.nc.Close()
		close(c.done)
		return err
	}
	lingerZero(c.nc)
	return c.nc.Close()
}

func lingerZero(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
}
