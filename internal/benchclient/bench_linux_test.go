package benchclient

import (
	"bytes"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// BenchmarkConsumeTicks is the epoll reader parsing a read of 16
// scroll_ticks, the bench's hot path at thousands of followers.
func BenchmarkConsumeTicks(b *testing.B) {
	var stream bytes.Buffer
	for range 16 {
		_ = ws.WriteFrame(&stream, ws.NewTextFrame([]byte(benchTick)))
	}
	data := stream.Bytes()
	n := 0
	c := &Conn{fd: -1, h: func(time.Time, []byte) { n++ }}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.consume(now, data); err != nil {
			b.Fatal(err)
		}
	}
	if n == 0 {
		b.Fatal("no tick dispatched")
	}
}
