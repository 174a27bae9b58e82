package benchclient

import (
	"bufio"
	"errors"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/bandsync/bandsync/internal/wsframe"
)

// Relay is the smallest server the bench's fan-out code can drive: it
// speaks just enough Engine.IO/Socket.IO to open, connect and answer
// join_session with a snapshot, and forwards every later message of a
// group's leader (the first to join) verbatim to the whole group, as a
// room broadcast would. While a group plays (after the leader's play) it
// also sends it a scroll_tick every tick interval, positioned from the
// leader's last seek, so the relay carries the same traffic as a server.
// It does no other session logic and no validation; a fan-out measured
// against it is the floor the machine, the kernel's loopback and the
// bench itself impose, and a real server's figures read as a ratio to it.
type Relay struct {
	ln     net.Listener
	nextID atomic.Uint64
	tick   time.Duration
	stop   chan struct{}

	mu     sync.Mutex
	groups map[string]*relayGroup
	order  []*relayGroup // creation order: every tick visits groups in the same order
	conns  map[*relayConn]struct{}
	closed bool
	wg     sync.WaitGroup
}

type relayGroup struct {
	id string
	mu sync.RWMutex
	// members[0] is the leader.
	members  []*relayConn
	playing  bool
	anchor   float64 // position (ms) at anchorAt
	anchorAt time.Time
	version  int
}

type relayConn struct {
	nc    net.Conn
	id    string
	wmu   sync.Mutex
	wbuf  []byte
	group *relayGroup // set once, by the connection's own goroutine
}

// ListenRelay starts a relay on addr (for example "127.0.0.1:0") that
// ticks playing groups every tick (no ticks when tick is 0).
func ListenRelay(addr string, tick time.Duration) (*Relay, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := &Relay{ln: ln, tick: tick, stop: make(chan struct{}), groups: make(map[string]*relayGroup), conns: make(map[*relayConn]struct{})}
	r.wg.Add(1)
	go r.accept()
	if tick > 0 {
		// One ticker per core, each for a share of the groups, as a
		// server would spread its writes over its cores.
		n := max(1, runtime.GOMAXPROCS(0))
		for i := range n {
			r.wg.Add(1)
			go r.ticker(i, n)
		}
	}
	return r, nil
}

// URL is the relay's base URL, to be given to SocketURL like a server's.
func (r *Relay) URL() string { return "http://" + r.ln.Addr().String() }

// Close stops the relay and closes every connection.
func (r *Relay) Close() error {
	err := r.ln.Close()
	r.mu.Lock()
	if !r.closed {
		close(r.stop)
	}
	r.closed = true
	for c := range r.conns {
		_ = c.nc.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return err
}

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		nc, err := r.ln.Accept()
		if err != nil {
			return
		}
		c := &relayConn{nc: nc, id: "r" + strconv.FormatUint(r.nextID.Add(1), 10)}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			_ = nc.Close()
			return
		}
		r.conns[c] = struct{}{}
		r.wg.Add(1)
		r.mu.Unlock()
		go r.serve(c)
	}
}

func (r *Relay) serve(c *relayConn) {
	defer r.wg.Done()
	defer func() {
		_ = c.nc.Close()
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
	}()
	_ = c.nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := ws.Upgrade(c.nc); err != nil {
		return
	}
	_ = c.nc.SetDeadline(time.Time{})
	if c.send([]byte(`0{"sid":"`+c.id+`","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`)) != nil {
		return
	}
	fr := frameReader{br: bufio.NewReaderSize(c.nc, readBufferSize)}
	var fwd []byte
	for {
		op, p, err := fr.next()
		if err != nil || op == ws.OpClose {
			return
		}
		if op != ws.OpText || len(p) < 2 || p[0] != '4' {
			continue // pongs and anything else the floor does not need
		}
		switch {
		case p[1] == '0':
			err = c.send([]byte(`40{"sid":"` + c.id + `"}`))
		case c.group != nil:
			if g := c.group; g.isLeader(c) {
				g.control(p[1:])
				// One encoding for the whole group, as a real server's
				// broadcast would do.
				fwd = wsframe.AppendFrame(fwd[:0], wsframe.OpText, p)
				g.broadcast(fwd)
			}
		default:
			err = r.join(c, p)
		}
		if err != nil {
			return
		}
	}
}

// join handles 42["join_session",{"sessionId":...}].
func (r *Relay) join(c *relayConn, p []byte) error {
	name, arg, ok := Event(p[1:])
	if !ok || string(name) != "join_session" {
		return nil
	}
	sid, ok := String(arg, "sessionId")
	if !ok {
		return errors.New("join_session without sessionId")
	}
	r.mu.Lock()
	g := r.groups[sid]
	if g == nil {
		g = &relayGroup{}
		r.groups[sid] = g
		r.order = append(r.order, g)
	}
	r.mu.Unlock()
	g.mu.Lock()
	g.id = sid
	g.members = append(g.members, c)
	leader := g.members[0].id
	g.mu.Unlock()
	c.group = g
	ts := strconv.FormatFloat(float64(time.Now().UnixMicro())/1000, 'f', 3, 64)
	return c.send([]byte(`42["snapshot",{"sessionId":` + strconv.Quote(sid) + `,"leaderSocketId":"` + leader +
		`","isPlaying":false,"position":0,"positionMs":0,"serverTimestamp":` + ts + `}]`))
}

func (g *relayGroup) isLeader(c *relayConn) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.members[0] == c
}

// control follows the leader's play, pause and seek, for the ticks.
func (g *relayGroup) control(pkt []byte) {
	name, arg, ok := Event(pkt)
	if !ok {
		return
	}
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	switch string(name) {
	case "play":
		if !g.playing {
			g.playing, g.anchorAt = true, now
		}
	case "pause":
		if g.playing {
			g.anchor += float64(now.Sub(g.anchorAt)) / 1e6
			g.playing = false
		}
	case "seek":
		if pos, ok := Float(arg, "position"); ok {
			g.anchor, g.anchorAt = pos, now
		}
	default:
		return
	}
	g.version++
}

// broadcast writes one frame to every member.
func (g *relayGroup) broadcast(frame []byte) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	for _, m := range g.members {
		_ = m.writeRaw(frame) // a dead member must not stop the others
	}
}

// ticker sends scroll_tick to the playing groups whose index is shard
// modulo n, on a fixed grid like the server's.
func (r *Relay) ticker(shard, n int) {
	defer r.wg.Done()
	var groups []*relayGroup
	var pkt, frame []byte
	start := time.Now()
	for k := 1; ; k++ {
		// A fixed grid, like the server's: a late wake-up does not
		// shift the ticks after it.
		next := start.Add(time.Duration(k) * r.tick)
		if d := time.Until(next); d > 0 {
			select {
			case <-r.stop:
				return
			case <-time.After(d):
			}
		} else {
			k = int(time.Since(start) / r.tick) // skip missed slots
			select {
			case <-r.stop:
				return
			default:
			}
		}
		groups = groups[:0]
		r.mu.Lock()
		for i := shard; i < len(r.order); i += n {
			groups = append(groups, r.order[i])
		}
		r.mu.Unlock()
		for _, g := range groups {
			now := time.Now()
			g.mu.RLock()
			playing, pos, version, id := g.playing, g.anchor+float64(now.Sub(g.anchorAt))/1e6, g.version, g.id
			g.mu.RUnlock()
			if !playing {
				continue
			}
			pkt = append(pkt[:0], `42["scroll_tick",{"sessionId":`...)
			pkt = strconv.AppendQuote(pkt, id)
			pkt = append(pkt, `,"positionMs":`...)
			pkt = strconv.AppendFloat(pkt, pos, 'f', 3, 64)
			pkt = append(pkt, `,"tempoBpm":120,"serverTimestamp":`...)
			pkt = strconv.AppendFloat(pkt, float64(now.UnixMicro())/1000, 'f', 3, 64)
			pkt = append(pkt, `,"version":`...)
			pkt = strconv.AppendInt(pkt, int64(version), 10)
			pkt = append(pkt, "}]"...)
			frame = wsframe.AppendFrame(frame[:0], wsframe.OpText, pkt)
			g.broadcast(frame)
		}
	}
}

func (c *relayConn) send(p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = wsframe.AppendFrame(c.wbuf[:0], wsframe.OpText, p)
	_, err := c.nc.Write(c.wbuf)
	return err
}

func (c *relayConn) writeRaw(frame []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(frame)
	return err
}
