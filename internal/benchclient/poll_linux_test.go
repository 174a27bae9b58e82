//go:build linux

package benchclient

import (
	"bytes"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// The epoll reader gets whatever a read returns: frames split anywhere,
// several in one read. Every packet must come out whole and in order.
func TestConsumeReassemblesSplitReads(t *testing.T) {
	want := []string{tickPkt, snapshotPkt, `2["x",{}]`, string(bytes.Repeat([]byte{'y'}, 70000))}
	var stream bytes.Buffer
	for _, p := range want {
		_ = ws.WriteFrame(&stream, ws.NewTextFrame([]byte("4"+p)))
	}
	_ = ws.WriteFrame(&stream, ws.NewFrame(ws.OpText, false, []byte("42[")))
	_ = ws.WriteFrame(&stream, ws.NewFrame(ws.OpContinuation, true, []byte(`"frag"]`)))
	want = append(want, `2["frag"]`)

	for _, chunk := range []int{1, 3, 7, 100, 1 << 20} {
		var got []string
		c := &Conn{h: func(_ time.Time, pkt []byte) { got = append(got, string(pkt)) }}
		data := stream.Bytes()
		for len(data) > 0 {
			n := min(chunk, len(data))
			// The poller reuses its buffer: hand consume a copy that is
			// clobbered afterwards, as the next read would.
			buf := append([]byte(nil), data[:n]...)
			if err := c.consume(time.Now(), buf); err != nil {
				t.Fatalf("chunk %d: %v", chunk, err)
			}
			clear(buf)
			data = data[n:]
		}
		if len(got) != len(want) {
			t.Fatalf("chunk %d: %d packets, want %d", chunk, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("chunk %d: packet %d differs", chunk, i)
			}
		}
		if len(c.pending) != 0 {
			t.Fatalf("chunk %d: %d bytes left over", chunk, len(c.pending))
		}
	}
}
