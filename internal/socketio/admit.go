package socketio

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/bandsync/bandsync/internal/protocol"
)

// admission caps the WebSocket connections held at once, in total and per
// client address, so that a flood of connections is refused with a clear
// answer while the process still has descriptors for /health, Redis and
// the clients already here, instead of failing accept() for everyone.
type admission struct {
	mu     sync.Mutex
	total  int
	byAddr map[string]int
	// refused counts refusals since the last warning, which is logged at
	// most once per warnEvery so a flood cannot flood the log too.
	refused  int
	lastWarn time.Time
}

const warnEvery = 10 * time.Second

// The refusals of admit, and the reject reason each is counted under.
const (
	refusedServerFull  = "server connection limit reached"
	refusedAddressFull = "too many connections from this address"
)

var busyReasons = map[string]string{
	refusedServerFull:  protocol.RejectCapacity,
	refusedAddressFull: protocol.RejectRateLimit,
}

// admit takes a slot for a connection from addr, or reports why not ("" if
// admitted). Loopback addresses are exempt from the per-address cap: behind
// a reverse proxy on the same host every client is loopback.
func (s *Server) admit(addr string) (key, refusal string) {
	key = hostOf(addr)
	perAddr := s.opts.MaxConnectionsPerAddr
	if ip := net.ParseIP(key); ip != nil && ip.IsLoopback() {
		perAddr = 0
	}
	a := &s.admission
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case s.opts.MaxConnections > 0 && a.total >= s.opts.MaxConnections:
		refusal = refusedServerFull
	case perAddr > 0 && a.byAddr[key] >= perAddr:
		refusal = refusedAddressFull
	default:
		a.total++
		if a.byAddr == nil {
			a.byAddr = make(map[string]int)
		}
		a.byAddr[key]++
		return key, ""
	}
	a.refused++
	if now := time.Now(); now.Sub(a.lastWarn) >= warnEvery {
		s.opts.Logger.Warn("refusing new connections", "reason", refusal, "remote", key,
			"refusedSinceLastWarning", a.refused, "connections", a.total,
			"maxConnections", s.opts.MaxConnections, "maxPerAddress", perAddr)
		a.lastWarn, a.refused = now, 0
	}
	return key, refusal
}

// release gives back the slot admit took.
func (s *Server) release(key string) {
	a := &s.admission
	a.mu.Lock()
	a.total--
	if a.byAddr[key] <= 1 {
		delete(a.byAddr, key)
	} else {
		a.byAddr[key]--
	}
	a.mu.Unlock()
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// refuseBusy answers a handshake over a connection cap: 503 with
// engine.io's error shape, so clients back off and retry.
func (s *Server) refuseBusy(w http.ResponseWriter, refusal string) {
	w.Header().Set("Retry-After", "5")
	s.refuseAs(w, busyReasons[refusal], http.StatusServiceUnavailable, 4, refusal)
}
