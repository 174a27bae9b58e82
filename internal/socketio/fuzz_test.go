package socketio

import (
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzDecode feeds arbitrary packets to the decoder and the event
// splitter. Whatever the input, they must return a packet or a
// *DecodeError, never panic, and an accepted EVENT must name a valid
// event.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`0`, `0{"pid":"a","offset":"1"}`, `0/admin,`, `1`,
		`2["join_session",{"sessionId":"band"}]`, `212["clock_sync",{"t0":1.5}]`,
		`2["play"]`, `2[]`, `2[1]`, `2["x",{"a":[[[[[[1]]]]]]}]`, `31["ok"]`,
		`51-["x",{"_placeholder":true,"num":0}]`, `2["a",{"b":"\"]}"}]`, `2/x,9[""]`,
		"2[\"a\",\"\\ud800\"]", `2["join_session",{`, `9`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodePacket(data)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a *DecodeError", err)
			}
			return
		}
		if p.Type == PacketEvent {
			name, _, err := splitEvent(p.Data)
			if err == nil && !validEventName(name) {
				t.Fatalf("accepted invalid event name %q", name)
			}
		}
	})
}

// FuzzFrames feeds arbitrary bytes to a connection's frame reader, whole
// and split at an arbitrary point (a frame arriving in two reads): it must
// never panic, never keep more than maxPayload plus a header of partial
// input, and never queue more than the write queue's bound.
func FuzzFrames(f *testing.F) {
	for _, s := range [][]byte{
		clientFrame(0x81, []byte(`42["x",1]`)), clientFrame(0x89, []byte("ping")),
		clientFrame(0x01, []byte(`42["x",`)), clientFrame(0x80, []byte(`1]`)),
		clientFrame(0xC1, []byte{0x2a, 0x31, 0x31, 0x01, 0x00}), clientFrame(0xA1, nil),
		clientFrame(0x81, []byte("40/ns,")), {0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0, 9},
	} {
		f.Add(s, uint16(len(s)/2))
	}
	s := NewServer(Options{MaxPayload: 4096, WriteQueueSize: 8})
	f.Cleanup(func() { s.stopOnce.Do(func() { close(s.stop) }) })
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		c := &Conn{srv: s, nc: newSink(), id: "f", closedCh: make(chan struct{}), deflate: true}
		c.connected.Store(true)
		cut := int(split) % (len(data) + 1)
		buf := append([]byte(nil), data[:cut]...)
		used, stop := c.consume(buf)
		if !stop {
			buf = append(buf[used:], data[cut:]...)
			used, stop = c.consume(buf)
			if !stop && len(buf)-used > 4096+14 {
				t.Fatalf("kept %d bytes of an incomplete frame, maxPayload 4096", len(buf)-used)
			}
		}
		if n := c.queueLen(); n > 8+controlSlack {
			t.Fatalf("%d frames queued, bound %d", n, 8+controlSlack)
		}
		c.close(ReasonTransportClose, nil)
	})
}

// FuzzInflate: arbitrary compressed input never panics and never yields
// more than the limit.
func FuzzInflate(f *testing.F) {
	f.Add([]byte{0x2a, 0x31, 0x31, 0x01, 0x00}, uint16(100))
	f.Add([]byte{0xfb, 0xff, 0xff, 0x07, 0x00}, uint16(10))
	f.Fuzz(func(t *testing.T, data []byte, limit uint16) {
		out, err := inflate(data, int(limit))
		if err == nil && len(out) > int(limit) {
			t.Fatalf("inflated %d bytes past the limit %d", len(out), limit)
		}
	})
}

// clientFrame builds one masked client frame with the given first byte.
func clientFrame(b0 byte, payload []byte) []byte {
	key := [4]byte{9, 8, 7, 6}
	f := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n <= 0xFFFF:
		f = append(f, 0x80|126, byte(n>>8), byte(n))
	default:
		f = append(f, 0x80|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	f = append(f, key[:]...)
	for i, b := range payload {
		f = append(f, b^key[i%4])
	}
	return f
}
