package socketio

import (
	"bytes"
	"net"
	"os"
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
