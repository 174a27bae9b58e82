package events

import (
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/socketio"
)

// How many sessions one socket and one address may create. A band starts
// one session; a venue's NAT puts every band there behind one address, so
// the address's allowance is a dozen bands' worth at once and one new
// session every two seconds after. Twelve sockets creating as fast as
// they may then hold a few hundred of MAX_SESSIONS' 10,000, since empty
// sessions are reclaimed within minutes.
const (
	socketCreateBurst = 5
	socketCreateEvery = 10 * time.Second
	addrCreateBurst   = 30
	addrCreateEvery   = 2 * time.Second
	// addrSweepEvery is how often addresses whose allowance is whole
	// again are forgotten, so the map holds only recent creators.
	addrSweepEvery = time.Minute
)

// creationLimits counts session creations per address. Per-socket
// allowances live in the socket's client.
type creationLimits struct {
	mu    sync.Mutex
	addrs map[string]*rate.Limiter
	swept time.Time
}

func newCreationLimits() *creationLimits {
	return &creationLimits{addrs: make(map[string]*rate.Limiter)}
}

func newSocketCreateLimit() *rate.Limiter {
	return rate.NewLimiter(rate.Every(socketCreateEvery), socketCreateBurst)
}

// allow charges one creation to the socket's allowance and its address's.
func (l *creationLimits) allow(sock *rate.Limiter, remote string, now time.Time) error {
	if sock == nil {
		sock = newSocketCreateLimit() // not a client of ours: a fresh allowance
	}
	if sock.TokensAt(now) < 1 {
		return tooManySessions("this connection")
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		// Behind a reverse proxy on the same host every client is
		// loopback: one allowance for all would lock every band out.
		sock.AllowN(now, 1)
		return nil
	}
	l.mu.Lock()
	if now.Sub(l.swept) > addrSweepEvery {
		l.swept = now
		for a, lim := range l.addrs {
			if lim.TokensAt(now) >= addrCreateBurst {
				delete(l.addrs, a)
			}
		}
	}
	lim := l.addrs[host]
	if lim == nil {
		lim = rate.NewLimiter(rate.Every(addrCreateEvery), addrCreateBurst)
		l.addrs[host] = lim
	}
	ok := lim.AllowN(now, 1)
	l.mu.Unlock()
	if !ok {
		return tooManySessions("this network address")
	}
	sock.AllowN(now, 1)
	return nil
}

func tooManySessions(who string) error {
	return &engine.Error{Code: protocol.CodeRateLimited,
		Message: "too many new sessions from " + who + "; join an existing session or try again shortly"}
}

// mayCreate is the join's creation check: the socket's allowance and its
// address's.
func (h *Handlers) mayCreate(c *socketio.Conn) error {
	var sock *rate.Limiter
	if cl, ok := c.Value.(*client); ok {
		sock = cl.creates
	}
	return h.creates.allow(sock, c.RemoteAddr(), time.Now())
}
