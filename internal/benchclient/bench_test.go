package benchclient

import (
	"bufio"
	"bytes"
	"net"
	"testing"

	"github.com/gobwas/ws"
)

const benchTick = `42["scroll_tick",{"sessionId":"band-1","positionMs":61234.5,"tempoBpm":120,"serverTimestamp":1795815325933.123,"version":7}]`

// loopReader replays the same bytes forever.
type loopReader struct {
	b []byte
	i int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := copy(p, r.b[r.i:])
	r.i = (r.i + n) % len(r.b)
	return n, nil
}

// BenchmarkReadTick is a follower reading one scroll_tick with the
// blocking reader (handshake, -readers goroutine, the relay).
func BenchmarkReadTick(b *testing.B) {
	var stream bytes.Buffer
	_ = ws.WriteFrame(&stream, ws.NewTextFrame([]byte(benchTick)))
	fr := frameReader{br: bufio.NewReaderSize(&loopReader{b: stream.Bytes()}, readBufferSize)}
	b.ReportAllocs()
	for b.Loop() {
		if op, p, err := fr.next(); err != nil || op != ws.OpText || len(p) != len(benchTick) {
			b.Fatalf("next = %v, %d bytes, %v", op, len(p), err)
		}
	}
}

// discardConn is a net.Conn whose writes go nowhere.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkEmit is a leader sending one seek: event encoding, masking, write.
func BenchmarkEmit(b *testing.B) {
	c := &Conn{nc: discardConn{}, fd: -1, done: make(chan struct{})}
	arg := []byte(`{"sessionId":"band-1","position":61234.5}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Emit("seek", arg); err != nil {
			b.Fatal(err)
		}
	}
}
