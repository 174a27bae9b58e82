//go:build linux && netfault && massdrop

package netfault

// Issue 11's mass-drop figure: a venue's Wi-Fi drops many phones at once
// (Redis mode). Each dropped socket times out on the server, which closes
// it and saves its recovery record to Redis; none of that may delay the
// pings of the sockets that are still there.
//
// The lab has three parties: a host "server" (redis-server and one
// bandsync instance), a host "phones" (the MASS_DROP_CLIENTS sockets that
// will be dropped, in sessions of 8, playing) and the test process on the
// lab's uplink (the watchers: one socket per session, playing, which time
// the server's Engine.IO pings and scroll ticks). The drop is real: the
// phones host's eth0 is set down, so the server's pings and ticks to them
// vanish without a FIN or a reset.
//
// A measurement, not a check: it is behind the massdrop build tag (make
// mass-drop, as root), out of make test, and prints the figures that
// docs/benchmarks.md quotes. It fails only when the measurement itself
// could not be made, or when a watcher was disconnected or a watcher's
// ping gap passed interval + timeout (the server would have dropped it).
// BANDSYNC_BIN measures another server binary (a before/after pair).

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sys/unix"

	"github.com/bandsync/bandsync/internal/benchclient"
	"github.com/bandsync/bandsync/internal/protocol"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// mdSocket is one socket of the measurement, with what it saw.
type mdSocket struct {
	c       *benchclient.Conn
	session string
	joined  chan struct{}
	playing chan struct{}
	once    [2]sync.Once

	mu      sync.Mutex
	lastErr string
	pings   []time.Time
	ticks   []time.Time
	closed  atomic.Bool
}

func (s *mdSocket) handle(now time.Time, pkt []byte) {
	name, arg, ok := benchclient.Event(pkt)
	if !ok {
		return
	}
	switch string(name) {
	case protocol.EventScrollTick:
		s.mu.Lock()
		s.ticks = append(s.ticks, now)
		s.mu.Unlock()
	case protocol.EventSnapshot:
		if id, _ := benchclient.String(arg, "sessionId"); id == s.session {
			s.once[0].Do(func() { close(s.joined) })
		}
		if p, _ := benchclient.Bool(arg, "isPlaying"); p {
			s.once[1].Do(func() { close(s.playing) })
		}
	case protocol.EventPlay:
		s.once[1].Do(func() { close(s.playing) })
	case protocol.EventError, protocol.EventRateLimitExceeded:
		s.mu.Lock()
		s.lastErr = string(name) + " " + string(arg)
		s.mu.Unlock()
	}
}

func (s *mdSocket) onPing(now time.Time) {
	s.mu.Lock()
	s.pings = append(s.pings, now)
	s.mu.Unlock()
}

// newSocket starts c as the i-th socket of sessions of size members named
// prefix<i/size>. It is started at once: a socket not read for interval +
// timeout would be dropped by the server before the measurement begins.
func newSocket(c *benchclient.Conn, s *mdSocket, i, size int, prefix string) *mdSocket {
	s.c = c
	s.session = prefix + strconv.Itoa(i/size)
	s.joined, s.playing = make(chan struct{}), make(chan struct{})
	c.Start(s.handle, func(error) { s.closed.Store(true) })
	return s
}

// dialFrom opens n sockets whose TCP connections live in namespace ns:
// a socket belongs to the namespace of the thread that creates it, so a
// goroutine locked to a thread moved into ns dials them all, and moves the
// thread back before unlocking it. (Left in ns, the thread could be the
// process's main one, which Go never ends: the lab's cleanup would then
// find the test process in the namespace and kill it.)
func dialFrom(ns string, sources []net.IP, wsURL string, n, size int, prefix string) ([]*mdSocket, error) {
	type result struct {
		socks []*mdSocket
		err   error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer home.Close()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{err: fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		defer func() {
			// Unlocked only once home again; otherwise the thread ends
			// with the goroutine (or, the main thread, stays wedged).
			if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			}
		}()
		socks := make([]*mdSocket, 0, n)
		for i := range n {
			c, err := benchclient.Dial(wsURL, benchclient.DialOptions{Local: sources[i/size/sessionsPerAddr], Timeout: 10 * time.Second})
			if err != nil {
				for _, s := range socks {
					_ = s.c.Close()
				}
				done <- result{err: err}
				return
			}
			socks = append(socks, newSocket(c, &mdSocket{}, i, size, prefix))
		}
		done <- result{socks: socks}
	}()
	r := <-done
	return r.socks, r.err
}

// joinAndPlay joins the sockets to sessions of size members each (the
// first one leads) and starts every session playing.
func joinAndPlay(t *testing.T, socks []*mdSocket, size int) {
	t.Helper()
	wait := func(s *mdSocket, ch <-chan struct{}, what string) {
		select {
		case <-ch:
		case <-time.After(20 * time.Second):
			s.mu.Lock()
			defer s.mu.Unlock()
			t.Fatalf("no %s within 20 s (closed %v, last error %q)", what, s.closed.Load(), s.lastErr)
		}
	}
	// Leaders first, one by one (a session's first member leads); then
	// the others, eight at a time.
	for i := 0; i < len(socks); i += size {
		join(t, socks[i], i%size)
		wait(socks[i], socks[i].joined, "snapshot after join_session")
	}
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				join(t, socks[i], i%size)
				select {
				case <-socks[i].joined:
				case <-time.After(20 * time.Second):
					t.Errorf("socket %d: no snapshot after join_session within 20 s", i)
				}
			}
		}()
	}
	for i := range socks {
		if i%size != 0 {
			jobs <- i
		}
	}
	close(jobs)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i := 0; i < len(socks); i += size {
		if err := socks[i].c.Emit(protocol.EventPlay, []byte(`{"sessionId":"`+socks[i].session+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range socks {
		wait(s, s.playing, "play")
	}
}

func join(t *testing.T, s *mdSocket, i int) {
	arg := `{"sessionId":"` + s.session + `","displayName":"m` + strconv.Itoa(i) + `"}`
	if err := s.c.Emit(protocol.EventJoinSession, []byte(arg)); err != nil {
		t.Errorf("join_session: %v", err)
	}
}

// gaps returns the inter-arrival times of ts whose later arrival falls in
// [from, to).
func gaps(ts []time.Time, from, to time.Time) *benchclient.Samples {
	var s benchclient.Samples
	for i := 1; i < len(ts); i++ {
		if !ts[i].Before(from) && ts[i].Before(to) {
			s.Add(ts[i].Sub(ts[i-1]))
		}
	}
	return &s
}

func health(url string) (int, error) {
	resp, err := http.Get(url + "/health")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var h struct {
		Connections int `json:"connections"`
	}
	err = json.NewDecoder(resp.Body).Decode(&h)
	return h.Connections, err
}

// savedRecords counts the recovery records of dropped phones (a pid key
// whose value's second line, the live flag, is 0, and whose rooms name a
// phone's session; redisstore.Recovery).
var savedRecords = redis.NewScript(`
local n = 0
for _, k in ipairs(redis.call('KEYS', ARGV[1])) do
	local v = redis.call('GET', k)
	if v and string.find(v, '\n0\n', 1, true) and string.find(v, ARGV[2], 1, true) then n = n + 1 end
end
return n`)

// sessionsPerAddr is how many sessions' phones share a source address.
const sessionsPerAddr = 25

func TestMassDrop(t *testing.T) {
	n := envInt("MASS_DROP_CLIENTS", 1000)
	nw := envInt("MASS_DROP_WATCHERS", 20)
	interval := time.Duration(envInt("MASS_DROP_PING_INTERVAL_MS", 1000)) * time.Millisecond
	timeout := time.Duration(envInt("MASS_DROP_PING_TIMEOUT_MS", 1000)) * time.Millisecond
	tick := envInt("MASS_DROP_TICK_MS", 100)
	const size = 8

	l := New(t)
	srv, phones := l.Host("server"), l.Host("phones")
	redisAddr := startRedis(t, l, srv)
	in := startInstance(t, l, srv, redisAddr, "LOG_LEVEL=warn", "REDIS_KEY_PREFIX=md:",
		"SOCKET_PING_INTERVAL="+strconv.Itoa(int(interval/time.Millisecond)),
		"SOCKET_PING_TIMEOUT="+strconv.Itoa(int(timeout/time.Millisecond)),
		"SCROLL_TICK_INTERVAL="+strconv.Itoa(tick))
	wsURL, err := benchclient.SocketURL(in.url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()

	start := time.Now()
	// The server admits 512 sockets and 30 new sessions at once per client
	// address (a venue's NAT): the phones host gets one address per 25
	// sessions (its own first), as if the phones were in several venues
	// behind one failing uplink.
	sources := []net.IP{net.ParseIP(phones.IP)}
	base := net.ParseIP(phones.IP).To4()
	addrs := (n + size*sessionsPerAddr - 1) / (size * sessionsPerAddr)
	if addrs > 50 { // .201-.249 are the lab's spare addresses here
		t.Fatalf("%d phones need %d source addresses; at most 50 (10,000 phones)", n, addrs)
	}
	for k := 1; k < addrs; k++ {
		ip := net.IPv4(base[0], base[1], base[2], byte(200+k))
		if out, err := phones.Command("ip", "addr", "add", ip.String()+"/24", "dev", "eth0").CombinedOutput(); err != nil {
			t.Fatalf("adding %s to the phones host: %v: %s", ip, err, out)
		}
		sources = append(sources, ip)
	}
	dropped, err := dialFrom(phones.NS, sources, wsURL, n, size, "drop-")
	if err != nil {
		t.Fatalf("dialing from the phones host: %v", err)
	}
	t.Cleanup(func() {
		for _, s := range dropped {
			_ = s.c.Close()
		}
	})
	joinAndPlay(t, dropped, size)
	watchers := make([]*mdSocket, nw)
	for i := range watchers {
		s := &mdSocket{}
		c, err := benchclient.Dial(wsURL, benchclient.DialOptions{Timeout: 10 * time.Second, OnPing: s.onPing})
		if err != nil {
			t.Fatal(err)
		}
		watchers[i] = newSocket(c, s, i, 1, "watch-")
		t.Cleanup(func() { _ = c.Close() })
	}
	joinAndPlay(t, watchers, 1)
	t.Logf("%d phones in %d sessions of %d and %d watchers joined and playing in %v",
		n, (n+size-1)/size, size, nw, time.Since(start).Round(time.Millisecond))
	if c, err := health(in.url); err != nil || c != n+nw {
		t.Fatalf("server counts %d connections (%v), want %d", c, err, n+nw)
	}

	settle := 3 * interval
	time.Sleep(settle)
	dropAt := time.Now()
	phones.LinkDown(true)

	// The server should close every phone within interval + timeout of
	// its last pong, plus a ping step; allow far more before giving up.
	var closedAt, savedAt time.Time
	giveUp := dropAt.Add(10*(interval+timeout) + 10*time.Second)
	ctx := context.Background()
	for closedAt.IsZero() || savedAt.IsZero() {
		if time.Now().After(giveUp) {
			break
		}
		now := time.Now()
		if closedAt.IsZero() {
			if c, err := health(in.url); err == nil && c <= liveWatchers(watchers) {
				closedAt = now
			}
		}
		if savedAt.IsZero() {
			if k, err := savedRecords.Run(ctx, rdb, nil, "md:pid:*", "session:drop-").Int(); err == nil && k >= n {
				savedAt = now
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	afterFrom := time.Now()
	time.Sleep(settle)
	end := time.Now()

	conns, _ := health(in.url)
	conns -= liveWatchers(watchers)
	saved, _ := savedRecords.Run(ctx, rdb, nil, "md:pid:*", "session:drop-").Int()
	since := func(at time.Time) string {
		if at.IsZero() {
			return "not within " + giveUp.Sub(dropAt).String()
		}
		return at.Sub(dropAt).Round(time.Millisecond).String()
	}
	fmt.Printf("\nmass drop: %d phones (sessions of %d, ticks %d ms) link down at once; %d watchers; ping interval %v, timeout %v; server %s\n",
		n, size, tick, nw, interval, timeout, serverBin)
	fmt.Printf("  server closed every phone: %s after the drop (%d phones' connections left)\n", since(closedAt), conns)
	fmt.Printf("  recovery records of dropped sockets in Redis: %d, all %d written %s after the drop\n", saved, n, since(savedAt))

	phases := []struct {
		name     string
		from, to time.Time
	}{
		{"before", dropAt.Add(-settle), dropAt},
		{"during", dropAt, afterFrom},
		{"after", afterFrom, end},
	}
	disconnected := 0
	for _, w := range watchers {
		if w.closed.Load() {
			disconnected++
		}
	}
	fmt.Printf("  %-7s %-5s %6s %8s %8s %8s\n", "phase", "what", "gaps", "p50 ms", "p99 ms", "max ms")
	worstPing := time.Duration(0)
	for _, ph := range phases {
		var pg, tg benchclient.Samples
		for _, w := range watchers {
			w.mu.Lock()
			pg.Merge(gaps(w.pings, ph.from, ph.to))
			tg.Merge(gaps(w.ticks, ph.from, ph.to))
			w.mu.Unlock()
		}
		worstPing = max(worstPing, pg.Max())
		for _, r := range []struct {
			what string
			s    *benchclient.Samples
		}{{"ping", &pg}, {"tick", &tg}} {
			fmt.Printf("  %-7s %-5s %6d %8.1f %8.1f %8.1f\n", ph.name, r.what, r.s.Len(),
				msf(r.s.Percentile(50)), msf(r.s.Percentile(99)), msf(r.s.Max()))
		}
	}
	fmt.Printf("  watchers disconnected: %d of %d (a disconnected watcher's last gap is not among the ping gaps)\n", disconnected, nw)

	if closedAt.IsZero() || savedAt.IsZero() {
		t.Errorf("the drop was not complete: %d connections left, %d of %d records saved", conns, saved, n)
	}
	if disconnected > 0 {
		t.Errorf("%d watchers were disconnected", disconnected)
	}
	if worstPing >= interval+timeout {
		t.Errorf("a watcher's ping gap reached %v, past interval + timeout (%v)", worstPing, interval+timeout)
	}
}

func liveWatchers(ws []*mdSocket) int {
	n := 0
	for _, w := range ws {
		if !w.closed.Load() {
			n++
		}
	}
	return n
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
