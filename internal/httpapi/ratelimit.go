package httpapi

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/bandsync/bandsync/internal/protocol"
)

// defaultMaxClients caps the limiter table. Idle entries are swept anyway;
// the cap only matters under a flood from more addresses than that within
// one window, when the newcomers share one overflow bucket instead of
// growing the table without bound.
const defaultMaxClients = 100_000

// overflowKey is the bucket shared by clients that find the table full; no
// real client key is empty.
const overflowKey = ""

// rateLimiter is a token bucket per client IP: max requests per window,
// refilled continuously rather than reset at window boundaries, so a client
// cannot burst 2*max across a boundary.
type rateLimiter struct {
	max        int
	window     time.Duration
	refill     rate.Limit // tokens per second
	trustProxy bool
	maxClients int
	now        func() time.Time

	mu        sync.Mutex
	clients   map[string]*client
	nextSweep time.Time
}

type client struct {
	bucket   *rate.Limiter
	lastSeen time.Time
}

// newRateLimiter returns nil, meaning no limit, unless both max and window
// are positive.
func newRateLimiter(max int, window time.Duration, trustProxy bool) *rateLimiter {
	if max <= 0 || window <= 0 {
		return nil
	}
	return &rateLimiter{
		max:        max,
		window:     window,
		refill:     rate.Limit(float64(max) / window.Seconds()),
		trustProxy: trustProxy,
		maxClients: defaultMaxClients,
		now:        time.Now,
		clients:    make(map[string]*client),
	}
}

// middleware answers 429 once a client's bucket is empty and advertises the
// quota with the IETF draft RateLimit-* headers that express-rate-limit
// (standardHeaders) sends, so existing dashboards and clients keep working.
func (l *rateLimiter) middleware(next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	policy := fmt.Sprintf("%d;w=%d", l.max, ceilSeconds(l.window))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Socket.IO connections are long-lived and limited per event instead.
		if strings.HasPrefix(r.URL.Path, socketIOPrefix) {
			next.ServeHTTP(w, r)
			return
		}
		d := l.take(clientKey(r, l.trustProxy))
		h := w.Header()
		h.Set("RateLimit-Policy", policy)
		h.Set("RateLimit-Limit", strconv.Itoa(l.max))
		h.Set("RateLimit-Remaining", strconv.Itoa(d.remaining))
		h.Set("RateLimit-Reset", strconv.Itoa(ceilSeconds(d.reset)))
		if !d.allowed {
			retry := max(1, ceilSeconds(d.retryAfter))
			h.Set("Retry-After", strconv.Itoa(retry))
			writeError(w, http.StatusTooManyRequests, protocol.CodeRateLimited,
				fmt.Sprintf("too many requests: at most %d per %s from one address; retry in %d s", l.max, l.window, retry))
			return
		}
		next.ServeHTTP(w, r)
	})
}

type decision struct {
	allowed    bool
	remaining  int           // whole tokens left after this request
	retryAfter time.Duration // until the next token, when refused
	reset      time.Duration // until the bucket is full again
}

func (l *rateLimiter) take(key string) decision {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()

	if !now.Before(l.nextSweep) {
		l.sweep(now)
	}
	c, ok := l.clients[key]
	if !ok {
		if len(l.clients) >= l.maxClients {
			l.sweep(now)
		}
		if len(l.clients) >= l.maxClients {
			key = overflowKey
			c = l.clients[key]
		}
		if c == nil {
			c = &client{bucket: rate.NewLimiter(l.refill, l.max)}
			l.clients[key] = c
		}
	}
	c.lastSeen = now

	d := decision{allowed: c.bucket.AllowN(now, 1)}
	tokens := c.bucket.TokensAt(now)
	d.remaining = max(0, int(tokens))
	d.reset = l.timeFor(float64(l.max) - tokens)
	if !d.allowed {
		d.retryAfter = l.timeFor(1 - tokens)
	}
	return d
}

// sweep forgets clients idle for a whole window: their buckets have refilled
// completely, so a fresh bucket on their next request behaves identically.
func (l *rateLimiter) sweep(now time.Time) {
	for k, c := range l.clients {
		if now.Sub(c.lastSeen) >= l.window {
			delete(l.clients, k)
		}
	}
	// Sweeping on every request would make each one O(table size).
	l.nextSweep = now.Add(max(l.window, time.Second))
}

func (l *rateLimiter) timeFor(tokens float64) time.Duration {
	if tokens <= 0 {
		return 0
	}
	return time.Duration(tokens / float64(l.refill) * float64(time.Second))
}

func ceilSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

// clientKey names the client a request counts against: its IP address, or
// for IPv6 its /64, since one subscriber usually holds a whole /64 and could
// otherwise dodge the limit (and fill the table) by rotating addresses.
func clientKey(r *http.Request, trustProxy bool) string {
	ip, ok := clientIP(r, trustProxy)
	if !ok {
		return clientHost(r, trustProxy)
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// clientIP is the address of the client that sent r.
func clientIP(r *http.Request, trustProxy bool) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(clientHost(r, trustProxy))
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap().WithZone(""), true
}

func clientHost(r *http.Request, trustProxy bool) string {
	addr := r.RemoteAddr
	if trustProxy {
		// The last entry is the one our proxy appended; earlier ones are
		// whatever the client chose to send.
		if fwd := r.Header.Values("X-Forwarded-For"); len(fwd) > 0 {
			list := strings.Split(fwd[len(fwd)-1], ",")
			if last := strings.TrimSpace(list[len(list)-1]); last != "" {
				addr = last
			}
		}
	}
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
