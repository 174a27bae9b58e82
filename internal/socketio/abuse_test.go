//go:build linux

package socketio

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/wsframe"
)

// rawClient is a hand-driven WebSocket client: it can do what
// socket.io-client never would (flood, stop reading, send bad frames).
type rawClient struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

// dialRaw upgrades a connection to srv's /socket.io/ and, when connect is
// set, sends the Socket.IO CONNECT.
func dialRaw(t testing.TB, url string, connect bool) *rawClient {
	t.Helper()
	// A small receive buffer: a client that stops reading is felt by the
	// server at once instead of after megabytes of kernel buffering.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	nc, err := d.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	req := "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	c := &rawClient{t: t, nc: nc, br: br}
	if connect {
		c.send(0x81, []byte("40"))
	}
	return c
}

func (c *rawClient) send(b0 byte, payload []byte) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.nc.Write(clientFrame(b0, payload))
	return err
}

// closeCode reads frames until a close frame and returns its code, or 0
// if the connection ended without one.
func (c *rawClient) closeCode(within time.Duration) int {
	_ = c.nc.SetReadDeadline(time.Now().Add(within))
	for {
		var h [2]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return 0
		}
		n := int(h[1] & 0x7F)
		switch n {
		case 126:
			var e [2]byte
			_, _ = io.ReadFull(c.br, e[:])
			n = int(binary.BigEndian.Uint16(e[:]))
		case 127:
			var e [8]byte
			_, _ = io.ReadFull(c.br, e[:])
			n = int(binary.BigEndian.Uint64(e[:]))
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(c.br, body); err != nil {
			return 0
		}
		if h[0]&0x0F == wsframe.OpClose && n >= 2 {
			return int(binary.BigEndian.Uint16(body))
		}
	}
}

// abuseServer serves s over real TCP and reports each connected socket.
func abuseServer(t testing.TB, o Options, handlers ...any) (*Server, string, chan *Conn) {
	conns := make(chan *Conn, 16)
	o.OnConnect = func(c *Conn) { conns <- c }
	s := testServer(t, o)
	for i := 0; i+1 < len(handlers); i += 2 {
		s.On(handlers[i].(string), handlers[i+1].(func(*Conn, json.RawMessage, Ack)))
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, hs.URL, conns
}

func connected(t testing.TB, conns chan *Conn) *Conn {
	t.Helper()
	select {
	case c := <-conns:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("the socket never connected")
		return nil
	}
}

// A client that floods pings and reads nothing gets one pong owed, not a
// queue of them: before, every ping queued a pong frame and one socket
// grew the server by hundreds of MB.
func TestPingFloodFromANonReaderCostsOneSlot(t *testing.T) {
	got := make(chan struct{}, 1)
	_, url, conns := abuseServer(t, Options{MaxFrameRate: 1 << 30}, // the budget is tested apart
		"done", func(*Conn, json.RawMessage, Ack) { got <- struct{}{} })
	cl := dialRaw(t, url, true)
	c := connected(t, conns)
	ping := clientFrame(0x89, []byte(strings.Repeat("p", 125)))
	batch := []byte{}
	for range 500 {
		batch = append(batch, ping...)
	}
	for range 100 { // 50,000 pings, 6.6 MB of pongs owed
		_ = cl.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := cl.nc.Write(batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.send(0x81, []byte(`42["done"]`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the server never read past the pings")
	}
	if n := c.queueLen(); n > 4 {
		t.Fatalf("%d frames queued for a client flooding pings; want the latest pong only", n)
	}
}

// A socket sending far past its frame budget is closed with 1008, and
// what it sent past the budget is not answered.
func TestFrameFloodIsRefusedThenClosed(t *testing.T) {
	s, url, conns := abuseServer(t, Options{MaxFrameRate: 200})
	cl := dialRaw(t, url, true)
	connected(t, conns)
	ping := clientFrame(0x89, []byte("x"))
	batch := []byte{}
	for range 100 {
		batch = append(batch, ping...)
	}
	go func() {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			_ = cl.nc.SetWriteDeadline(deadline)
			if _, err := cl.nc.Write(batch); err != nil {
				return
			}
		}
	}()
	if code := cl.closeCode(8 * time.Second); code != 1008 {
		t.Fatalf("close code %d for a frame flood, want 1008", code)
	}
	if s.Stats().RefusedFrames == 0 {
		t.Fatal("no frame counted as refused")
	}
}

// Namespace CONNECTs from a client that does not read its connect_errors
// fill a bounded queue and get the socket closed, before and after its own
// CONNECT: they no longer bypass SOCKET_WRITE_QUEUE.
func TestUnknownNamespaceFloodIsBounded(t *testing.T) {
	for _, after := range []bool{false, true} {
		s, url, _ := abuseServer(t, Options{MaxFrameRate: 1 << 30, MaxReadRate: 1 << 30, WriteQueueSize: 64})
		cl := dialRaw(t, url, after)
		frame := clientFrame(0x81, []byte("40/"+strings.Repeat("x", 200)+","))
		batch := []byte{}
		for range 200 {
			batch = append(batch, frame...)
		}
		for range 200 { // 40,000 connect_errors owed, 10 MB
			_ = cl.nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := cl.nc.Write(batch); err != nil {
				break // closed: what we want
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for s.Stats().QueueOverflows == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if s.Stats().QueueOverflows == 0 {
			t.Fatalf("after CONNECT=%v: a non-reading namespace flood was never dropped", after)
		}
	}
}

// RFC 6455: reserved bits no extension defines close with 1002, a text
// message that is not UTF-8 with 1007.
func TestStrictFrames(t *testing.T) {
	_, url, conns := abuseServer(t, Options{})
	for _, tc := range []struct {
		name    string
		b0      byte
		payload []byte
		code    int
	}{
		{"rsv2", 0x81 | 0x20, []byte(`42["x"]`), 1002},
		{"rsv3", 0x81 | 0x10, []byte(`42["x"]`), 1002},
		{"rsv1 on a ping", 0x89 | 0x40, nil, 1002},
		{"invalid UTF-8", 0x81, []byte("42[\"x\",\"\xff\xfe\"]"), 1007},
	} {
		cl := dialRaw(t, url, true)
		connected(t, conns)
		if err := cl.send(tc.b0, tc.payload); err != nil {
			t.Fatal(err)
		}
		if code := cl.closeCode(5 * time.Second); code != tc.code {
			t.Errorf("%s: close code %d, want %d", tc.name, code, tc.code)
		}
	}
}

// A fragmented message never finished is dropped with the connection once
// incompleteTimeout passes, even while the client keeps talking.
func TestUnfinishedMessageTimesOut(t *testing.T) {
	old := incompleteTimeout
	incompleteTimeout = 300 * time.Millisecond
	t.Cleanup(func() { incompleteTimeout = old })
	_, url, conns := abuseServer(t, Options{})
	cl := dialRaw(t, url, true)
	connected(t, conns)
	if err := cl.send(0x01, []byte(`42["x",`)); err != nil { // text, not final
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() { done <- cl.closeCode(5 * time.Second) }()
	for i := 0; i < 40; i++ {
		if cl.send(0x89, nil) != nil { // pings keep the connection alive
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if code := <-done; code != 1008 {
		t.Fatalf("close code %d for an unfinished message, want 1008", code)
	}
}

// A frame trickled a byte at a time is still assembled and handled.
func TestFrameSentAByteAtATime(t *testing.T) {
	got := make(chan string, 1)
	_, url, conns := abuseServer(t, Options{}, "slow", func(_ *Conn, data json.RawMessage, _ Ack) { got <- string(data) })
	cl := dialRaw(t, url, true)
	connected(t, conns)
	arg := strings.Repeat("a", 3000)
	for _, b := range clientFrame(0x81, []byte(`42["slow","`+arg+`"]`)) {
		if _, err := cl.nc.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case g := <-got:
		if g != `"`+arg+`"` {
			t.Fatalf("got %.40s...", g)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a frame sent byte by byte was never handled")
	}
}

// A recovery attempt with the pid of a socket that is still connected is
// refused, and leaves the owner's record where it was.
func TestRecoveryPidOfALiveSocketIsRefusedAndKept(t *testing.T) {
	rec := NewMemoryRecovery(time.Minute, 100, 1<<20)
	s, url, conns := abuseServer(t, Options{Recovery: rec})
	victim := newTestConn(s, "victim", newSink())
	defer victim.close(ReasonServerShutdown, nil)
	_ = rec.Save(context.Background(), "victim-pid", Saved{SID: "victim", At: time.Now()})
	cl := dialRaw(t, url, false)
	if err := cl.send(0x81, []byte(`40{"pid":"victim-pid","offset":"0"}`)); err != nil {
		t.Fatal(err)
	}
	c := connected(t, conns)
	if c.Recovered() || c.ID() == "victim" {
		t.Fatalf("a live socket's identity was taken over (id %s, recovered %v)", c.ID(), c.Recovered())
	}
	if _, ok, _ := rec.Take(context.Background(), "victim-pid"); !ok {
		t.Fatal("the refused attempt deleted the owner's recovery record")
	}
}

// Past the connection caps a handshake gets a clear 503 (not a timeout at
// the file limit), and a slot freed is a slot for the next client; one
// address's flood leaves room for another's.
func TestConnectionCaps(t *testing.T) {
	rejected := make(chan string, 8)
	s, url, conns := abuseServer(t, Options{MaxConnections: 3, OnReject: func(reason string) { rejected <- reason }})
	var held []*rawClient
	for range 3 {
		held = append(held, dialRaw(t, url, true))
		connected(t, conns)
	}
	if code := upgradeStatus(t, url); code != http.StatusServiceUnavailable {
		t.Fatalf("status %d past MaxConnections, want 503", code)
	}
	if r := <-rejected; r != protocol.RejectCapacity {
		t.Fatalf("a handshake past MaxConnections was counted as %q, want %q", r, protocol.RejectCapacity)
	}
	_ = held[0].nc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Connections > 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	dialRaw(t, url, true)
	connected(t, conns)

	s2 := testServer(t, Options{MaxConnectionsPerAddr: 2, MaxConnections: -1})
	for i := range 2 {
		if _, why := s2.admit("10.0.0.1:" + strconv.Itoa(i)); why != "" {
			t.Fatalf("connection %d refused: %s", i+1, why)
		}
	}
	if _, why := s2.admit("10.0.0.1:9"); why == "" {
		t.Fatal("a third connection from one address was admitted")
	}
	if _, why := s2.admit("10.0.0.2:1"); why != "" {
		t.Fatalf("another address was refused: %s", why)
	}
	if _, why := s2.admit("127.0.0.1:1"); why != "" {
		t.Fatalf("loopback (a same-host proxy) was capped: %s", why)
	}
}

// upgradeStatus sends a WebSocket handshake and returns the status.
func upgradeStatus(t testing.TB, url string) int {
	nc, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

// The HTTP server's read and write timeouts (against slow or idle HTTP
// clients) end with the handshake: a WebSocket that has been open longer
// still reads and writes.
func TestWebSocketOutlivesHTTPTimeouts(t *testing.T) {
	got := make(chan struct{}, 1)
	s := testServer(t, Options{})
	s.On("late", func(*Conn, json.RawMessage, Ack) { got <- struct{}{} })
	hs := httptest.NewUnstartedServer(s)
	hs.Config.ReadTimeout = 200 * time.Millisecond
	hs.Config.WriteTimeout = 200 * time.Millisecond
	hs.Config.IdleTimeout = 200 * time.Millisecond
	hs.Start()
	t.Cleanup(hs.Close)
	cl := dialRaw(t, hs.URL, true)
	time.Sleep(600 * time.Millisecond)
	if err := cl.send(0x81, []byte(`42["late"]`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(3 * time.Second):
		t.Fatal("a WebSocket older than the HTTP read timeout was no longer read")
	}
}

// The byte budget is set above any honest client whatever maxPayload is:
// with a small SOCKET_MAX_BUFFER_SIZE, a burst of 200 events of 1.5 KB is
// still all handled.
func TestByteBudgetLeavesHonestBurstsAlone(t *testing.T) {
	got := make(chan struct{}, 256)
	_, url, conns := abuseServer(t, Options{MaxPayload: 20000}, "e", func(*Conn, json.RawMessage, Ack) { got <- struct{}{} })
	cl := dialRaw(t, url, true)
	connected(t, conns)
	frame := clientFrame(0x81, []byte(`42["e","`+strings.Repeat("a", 1500)+`"]`))
	var burst []byte
	for range 200 {
		burst = append(burst, frame...)
	}
	if _, err := cl.nc.Write(burst); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of 200 events handled", i)
		}
	}
}
