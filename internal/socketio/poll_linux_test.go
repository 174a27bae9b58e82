package socketio

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// socketConn registers a connected Conn over a real socket, written the
// way the server writes its clients on Linux (raw, non-blocking), and
// returns the peer's end.
func socketConn(t testing.TB, s *Server, id string) (*Conn, *os.File) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	srvFile := os.NewFile(uintptr(fds[0]), "server")
	nc, err := net.FileConn(srvFile) // dups the descriptor, non-blocking
	_ = srvFile.Close()
	if err != nil {
		t.Fatal(err)
	}
	peer := os.NewFile(uintptr(fds[1]), "peer")
	c := &Conn{srv: s, nc: nc, id: id, closedCh: make(chan struct{})}
	c.initRaw()
	if c.raw == nil {
		t.Fatal("no raw descriptor for a Unix socket")
	}
	c.lastRead.Store(time.Now().UnixNano()) // else the ping sweep drops it as silent
	c.connected.Store(true)
	s.register(c)
	t.Cleanup(func() { _ = nc.Close(); _ = peer.Close() })
	return c, peer
}

// drain reads the peer's end until it is closed, counting what arrives.
func drain(peer *os.File, got *bytes.Buffer, mu *sync.Mutex) {
	buf := make([]byte, 64<<10)
	for {
		n, err := peer.Read(buf)
		if n > 0 && got != nil {
			mu.Lock()
			got.Write(buf[:n])
			mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// Over real sockets, written raw and non-blocking by several workers,
// every member of a room receives each broadcast in order.
func TestBroadcastOverSocketsReachesEveryMemberInOrder(t *testing.T) {
	s := testServer(t, Options{})
	const members, events = 12, 50
	var mu sync.Mutex
	got := make([]*bytes.Buffer, members)
	for i := range members {
		c, peer := socketConn(t, s, string(rune('a'+i)))
		c.Join("band")
		got[i] = new(bytes.Buffer)
		go drain(peer, got[i], &mu)
	}
	for i := range events {
		if err := s.Broadcast("band", "seek", map[string]int{"position": i}); err != nil {
			t.Fatal(err)
		}
	}
	last := []byte(`42["seek",{"position":` + strconv.Itoa(events-1) + `}]`)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		done := true
		for _, b := range got {
			done = done && bytes.Contains(b.Bytes(), last)
		}
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for m, b := range got {
		data := b.Bytes()
		for i := range events {
			ev := []byte(`42["seek",{"position":` + strconv.Itoa(i) + `}]`)
			k := bytes.Index(data, ev)
			if k < 0 {
				t.Fatalf("member %d: event %d missing or out of order in %d bytes", m, i, b.Len())
			}
			data = data[k+len(ev):]
		}
	}
}

// BenchmarkBroadcastSockets is BenchmarkBroadcast over real sockets, the
// path the server takes on Linux (raw, non-blocking writes). allocs/op
// must not grow with the member count.
func BenchmarkBroadcastSockets10(b *testing.B)  { benchBroadcastSockets(b, 10) }
func BenchmarkBroadcastSockets100(b *testing.B) { benchBroadcastSockets(b, 100) }

func benchBroadcastSockets(b *testing.B, members int) {
	s := testServer(b, Options{WriteQueueSize: 1 << 20})
	var conns []*Conn
	for i := range members {
		c, peer := socketConn(b, s, string(rune(0x100+i)))
		c.Join("band")
		conns = append(conns, c)
		go drain(peer, nil, nil)
	}
	broadcastTicks(b, s, conns)
}

// maskedText is a client's WebSocket text frame (clients must mask).
func maskedText(payload string) []byte {
	key := [4]byte{1, 2, 3, 4}
	f := []byte{0x81, 0x80 | byte(len(payload))}
	f = append(f, key[:]...)
	for i := range len(payload) {
		f = append(f, payload[i]^key[i%4])
	}
	return f
}

// The poller hands a readable socket's events to their handler, in the
// order the client sent them, and a shut-down server leaves no goroutine
// behind (the poller parks in Go's own network poller, so stopping it
// must wake it).
func TestPollerDeliversEventsAndStopsWithTheServer(t *testing.T) {
	before := runtime.NumGoroutine()
	s := NewServer(Options{})
	if s.poller == nil {
		t.Skip("no poller on this system")
	}
	got := make(chan string, 4)
	s.On("note", func(_ *Conn, data json.RawMessage, _ Ack) { got <- string(data) })
	c, peer := socketConn(t, s, "p")
	if !s.poller.add(c) {
		t.Fatal("poller refused a socket")
	}
	if _, err := peer.Write(append(maskedText(`42["note",1]`), maskedText(`42["note",2]`)...)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1", "2"} {
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("handler got %s, want %s", g, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %s never reached its handler", want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines after shutdown, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
