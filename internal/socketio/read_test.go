package socketio

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// A client message reaches its handler whole whichever length encoding its
// frame uses (7-bit, 16-bit, 64-bit), whether it arrives in one read or
// split inside the header, and fragmented or not.
func TestInboundLengthEncodings(t *testing.T) {
	s := testServer(t, Options{MaxPayload: 1 << 20})
	var got []int
	s.On("e", func(_ *Conn, data json.RawMessage, _ Ack) {
		var v string
		_ = json.Unmarshal(data, &v)
		got = append(got, len(v))
	})
	c := newTestConn(s, "r", newSink())
	const overhead = len(`42["e",""]`)
	for _, n := range []int{125, 126, 127, 65535, 65536, 70000} {
		pkt := []byte(`42["e","` + strings.Repeat("x", n-overhead) + `"]`)
		for _, split := range []int{1, 3, 9, 0} {
			got = got[:0]
			frame := clientFrame(0x81, pkt)
			want := 14 // 2 + 64-bit length + mask
			switch {
			case n <= 125:
				want = 6
			case n <= 0xFFFF:
				want = 8
			}
			if len(frame)-len(pkt) != want {
				t.Fatalf("n=%d: test frame has a %d-byte header", n, len(frame)-len(pkt))
			}
			buf := append([]byte(nil), frame...)
			if split > 0 {
				used, stop := c.consume(buf[:split])
				if stop || used != 0 {
					t.Fatalf("n=%d split=%d: a partial header was consumed (used=%d stop=%v)", n, split, used, stop)
				}
			}
			if used, stop := c.consume(buf); stop || used != len(buf) {
				t.Fatalf("n=%d split=%d: used %d of %d, stop=%v", n, split, used, len(buf), stop)
			}
			if len(got) != 1 || got[0] != n-overhead {
				t.Fatalf("n=%d split=%d: handler saw %v, want one string of %d", n, split, got, n-overhead)
			}
			c.fragSince = time.Time{}
		}
		// The same message in two fragments.
		got = got[:0]
		half := len(pkt) / 2
		buf := append(clientFrame(0x01, pkt[:half]), clientFrame(0x80, pkt[half:])...)
		if used, stop := c.consume(buf); stop || used != len(buf) || len(got) != 1 || got[0] != n-overhead {
			t.Fatalf("n=%d fragmented: used %d of %d, stop=%v, handler saw %v", n, used, len(buf), stop, got)
		}
	}
	if c.isClosed() {
		t.Fatal("the connection was closed")
	}
}
