package socketio

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/wsframe"
)

// sinkConn is a net.Conn that accepts every write; optionally it blocks
// writes until released, to play a client that stopped reading.
type sinkConn struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	writes  int
	block   chan struct{}
	closed  chan struct{}
	discard bool
	once    sync.Once
}

func newSink() *sinkConn { return &sinkConn{closed: make(chan struct{})} }

func (s *sinkConn) Write(p []byte) (int, error) {
	if s.block != nil {
		select {
		case <-s.block:
		case <-s.closed:
			return 0, net.ErrClosed
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	if !s.discard {
		s.buf.Write(p)
	}
	return len(p), nil
}
func (s *sinkConn) Read([]byte) (int, error)           { <-s.closed; return 0, net.ErrClosed }
func (s *sinkConn) Close() error                       { s.once.Do(func() { close(s.closed) }); return nil }
func (s *sinkConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (s *sinkConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (s *sinkConn) SetDeadline(time.Time) error        { return nil }
func (s *sinkConn) SetReadDeadline(time.Time) error    { return nil }
func (s *sinkConn) SetWriteDeadline(t time.Time) error { return nil }

func (s *sinkConn) written() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func testServer(t testing.TB, o Options) *Server {
	s := NewServer(o)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

// newTestConn registers a connected socket writing to sink.
func newTestConn(s *Server, id string, sink *sinkConn) *Conn {
	c := &Conn{srv: s, nc: sink, id: id, closedCh: make(chan struct{})}
	c.lastRead.Store(time.Now().UnixNano()) // else the ping sweep drops it as silent
	c.connected.Store(true)
	s.register(c)
	return c
}

func waitIdle(t testing.TB, c *Conn) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		idle := !c.writing
		c.mu.Unlock()
		if idle {
			return
		}
		time.Sleep(time.Millisecond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t.Fatalf("writer did not drain: %d frames queued, closed=%v", c.qlenLocked(), c.closed)
}

func TestBroadcastReachesRoomMembersOnly(t *testing.T) {
	s := testServer(t, Options{})
	sinks := []*sinkConn{newSink(), newSink(), newSink()}
	var conns []*Conn
	for i, sk := range sinks {
		conns = append(conns, newTestConn(s, string(rune('a'+i)), sk))
	}
	conns[0].Join("band")
	conns[1].Join("band")
	if err := s.Broadcast("band", "snapshot", map[string]int{"version": 3}); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		waitIdle(t, c)
	}
	for i, want := range []bool{true, true, false} {
		got := bytes.Contains([]byte(sinks[i].written()), []byte(`42["snapshot",{"version":3}`))
		if got != want {
			t.Errorf("member %d received=%v, want %v (wrote %q)", i, got, want, sinks[i].written())
		}
	}
	conns[1].Leave("band")
	if n := s.RoomSize("band"); n != 1 {
		t.Fatalf("room size after leave = %d, want 1", n)
	}
}

func TestRecoveryRing(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	m := NewMemoryRecovery(time.Minute, 4, 1<<20)
	m.now = func() time.Time { return now }
	for i := uint64(1); i <= 3; i++ {
		_ = m.Append(ctx, []string{"", "room:a", "sid1", "room:b"}[i], i, []byte{byte('0' + i)})
	}
	recs, ok, _ := m.Since(ctx, 1, []string{"room:b", "sid1"})
	if !ok || len(recs) != 2 || recs[0].Offset != 2 || recs[1].Offset != 3 {
		t.Fatalf("Since(1) = %+v, %v", recs, ok)
	}
	for i := uint64(4); i <= 6; i++ {
		_ = m.Append(ctx, "room:a", i, []byte("x"))
	}
	// Offsets 1 and 2 were evicted by the count bound: a client at 1
	// would miss 2, so it must not be recovered.
	if _, ok, _ := m.Since(ctx, 1, []string{"room:a"}); ok {
		t.Fatal("recovered across evicted packets")
	}
	if recs, ok, _ := m.Since(ctx, 2, []string{"room:a"}); !ok || len(recs) != 3 {
		t.Fatalf("Since(2) = %d records, %v; want 3 (4,5,6)", len(recs), ok)
	}
	now = now.Add(2 * time.Minute)
	if _, ok, _ := m.Since(ctx, 5, []string{"room:a"}); ok {
		t.Fatal("recovered after the window passed")
	}
	_ = m.Save(ctx, "pid1", Saved{SID: "s", At: now})
	if _, ok, _ := m.Take(ctx, "pid1"); !ok {
		t.Fatal("saved session not found")
	}
	if _, ok, _ := m.Take(ctx, "pid1"); ok {
		t.Fatal("a session was taken twice")
	}
}

// BenchmarkBroadcast measures one room broadcast; allocs/op must not grow
// with the member count (0 allocations per member).
func BenchmarkBroadcast10(b *testing.B)   { benchBroadcast(b, 10) }
func BenchmarkBroadcast100(b *testing.B)  { benchBroadcast(b, 100) }
func BenchmarkBroadcast1000(b *testing.B) { benchBroadcast(b, 1000) }

func benchBroadcast(b *testing.B, members int) {
	s := testServer(b, Options{WriteQueueSize: 1 << 20})
	var conns []*Conn
	for i := 0; i < members; i++ {
		sk := newSink()
		sk.discard = true
		c := newTestConn(s, string(rune(0x100+i)), sk)
		c.Join("band")
		conns = append(conns, c)
	}
	broadcastTicks(b, s, conns)
}

// broadcastTicks is the measured loop: b.N tick broadcasts to the room
// "band", waiting every 64 for the writers, so ns/op includes the writes
// and queues never fill.
func broadcastTicks(b *testing.B, s *Server, conns []*Conn) {
	payload := []byte(`{"sessionId":"band","positionMs":12345.678,"tempoBpm":120,"serverTimestamp":1795815239651.138,"version":3}`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.BroadcastFrame("band", encodeVolatile("scroll_tick", payload))
		if i%64 == 63 {
			for _, c := range conns {
				waitIdle(b, c)
			}
		}
	}
	b.StopTimer()
	for _, c := range conns {
		waitIdle(b, c)
	}
}

// A socket that timed out is closed off the ping loop: however long its
// disconnect hooks take (a Redis save, a detach through the store), every
// other socket keeps getting its pings.
func TestPingTimeoutHooksDoNotDelayOtherSocketsPings(t *testing.T) {
	hookEntered, releaseHook := make(chan struct{}), make(chan struct{})
	s := testServer(t, Options{
		PingInterval: 160 * time.Millisecond, PingTimeout: 100 * time.Millisecond,
		OnDisconnect: func(c *Conn, _ string, _ bool) {
			if c.ID() == "dead" {
				close(hookEntered)
				<-releaseHook
			}
		},
	})
	defer close(releaseHook)
	live := newSink()
	lc := newTestConn(s, "live", live)
	dead := newTestConn(s, "dead", newSink())
	dead.lastRead.Store(time.Now().Add(-time.Hour).UnixNano())
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the live phone answers: it is never silent
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				lc.lastRead.Store(time.Now().UnixNano())
			}
		}
	}()
	select {
	case <-hookEntered:
	case <-time.After(5 * time.Second):
		t.Fatal("the silent socket was never closed for a ping timeout")
	}
	pings := func() int { return strings.Count(live.written(), string(pingFrame.plain)) }
	before := pings()
	deadline := time.Now().Add(5 * time.Second)
	for pings() < before+3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := pings() - before; got < 3 {
		t.Fatalf("the live socket got %d pings while another socket's disconnect hook was stuck, want >= 3", got)
	}
}

// encodeVolatile builds a volatile event frame to hand to BroadcastFrame.
func encodeVolatile(event string, payload []byte) *Frame {
	pkt := wsframe.AppendEvent(make([]byte, 0, wsframe.EventLen(event, payload, "")), event, payload, "")
	f := newFrame(wsframe.OpText, pkt)
	f.volatile = true
	return f
}
