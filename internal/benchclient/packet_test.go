package benchclient

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// Packets as the Go server and the Node original put them on the wire
// (after the Engine.IO "4").
const (
	tickPkt     = `2["scroll_tick",{"sessionId":"band-1","positionMs":61234.5,"tempoBpm":120,"serverTimestamp":1795815325933.123,"version":7}]`
	snapshotPkt = `2["snapshot",{"sessionId":"band-1","message":"say \"hi\" {not a key}","members":[{"socketId":"a","displayName":"x","position":5}],` +
		`"settings":{"maxMembers":50},"isPlaying":true,"position":1020000,"positionMs":1020000,"serverTimestamp":1795815325000.5,"leaderSocketId":null},"000000000000000000042"]`
)

func TestEventReadsServerPackets(t *testing.T) {
	name, arg, ok := Event([]byte(tickPkt))
	if !ok || string(name) != "scroll_tick" {
		t.Fatalf("Event(tick) = %q, ok=%v", name, ok)
	}
	if v, ok := Float(arg, "positionMs"); !ok || v != 61234.5 {
		t.Errorf("positionMs = %v, %v", v, ok)
	}
	if v, ok := Float(arg, "serverTimestamp"); !ok || v != 1795815325933.123 {
		t.Errorf("serverTimestamp = %v, %v", v, ok)
	}
	if v, ok := String(arg, "sessionId"); !ok || v != "band-1" {
		t.Errorf("sessionId = %q, %v", v, ok)
	}

	// A snapshot with a recovery offset after it, a nested "position"
	// and a message full of JSON syntax: only top-level keys count.
	name, arg, ok = Event([]byte(snapshotPkt))
	if !ok || string(name) != "snapshot" {
		t.Fatalf("Event(snapshot) = %q, ok=%v", name, ok)
	}
	if v, ok := Float(arg, "position"); !ok || v != 1020000 {
		t.Errorf("position = %v, %v (nested member position must not be read)", v, ok)
	}
	if v, ok := Bool(arg, "isPlaying"); !ok || !v {
		t.Errorf("isPlaying = %v, %v", v, ok)
	}
	if v, ok := String(arg, "message"); !ok || v != `say "hi" {not a key}` {
		t.Errorf("message = %q, %v", v, ok)
	}
	if _, ok := Float(arg, "leaderSocketId"); ok {
		t.Error("null read as a number")
	}
	if _, ok := Float(arg, "maxMembers"); ok {
		t.Error("a key of a nested object was found at the top level")
	}
	if _, ok := Lookup(arg, "missing"); ok {
		t.Error("found a key that is not there")
	}
}

func TestEventVariants(t *testing.T) {
	for _, tc := range []struct {
		pkt, name string
		ok        bool
	}{
		{`2["stop",{"sessionId":"s"}]`, "stop", true},
		{`2/admin,["x",{}]`, "x", true},
		{`212["with_ack",{}]`, "with_ack", true},
		{`2[ "spaced" , { "a" : 1 } ]`, "spaced", true},
		{`2["no_arg"]`, "no_arg", true},
		{`0{"sid":"abc"}`, "", false},
		{`3["ack"]`, "", false},
		{`2`, "", false},
		{`2[1,2]`, "", false},
		{`2["unterminated`, "", false},
	} {
		name, _, ok := Event([]byte(tc.pkt))
		if ok != tc.ok || string(name) != tc.name {
			t.Errorf("Event(%s) = %q, %v; want %q, %v", tc.pkt, name, ok, tc.name, tc.ok)
		}
	}
	if _, arg, _ := Event([]byte(`2[ "spaced" , { "a" : 1 } ]`)); func() bool { v, ok := Float(arg, "a"); return !ok || v != 1 }() {
		t.Error("whitespace around keys and values not handled")
	}
}

// Frames the bench writes must be masked client frames a server library
// reads back, and frames a server writes must be read by the bench.
func TestFramesRoundTrip(t *testing.T) {
	for _, n := range []int{0, 5, 125, 126, 65535, 65536, 200000} {
		payload := bytes.Repeat([]byte{'a'}, n)
		frame := appendClientFrame(nil, ws.OpText, payload)
		r := bytes.NewReader(frame)
		h, err := ws.ReadHeader(r)
		if err != nil {
			t.Fatalf("n=%d: gobwas cannot read our frame's header: %v", n, err)
		}
		f := ws.Frame{Header: h, Payload: make([]byte, h.Length)}
		if _, err := io.ReadFull(r, f.Payload); err != nil || r.Len() != 0 {
			t.Fatalf("n=%d: payload length %d does not match the frame (%v, %d bytes left)", n, h.Length, err, r.Len())
		}
		if !f.Header.Masked {
			t.Fatalf("n=%d: client frame not masked", n)
		}
		f = ws.UnmaskFrameInPlace(f)
		if !bytes.Equal(f.Payload, payload) {
			t.Fatalf("n=%d: payload changed", n)
		}

		var server bytes.Buffer
		if err := ws.WriteFrame(&server, ws.NewTextFrame(payload)); err != nil {
			t.Fatal(err)
		}
		fr := frameReader{br: bufio.NewReaderSize(&server, 64)}
		op, got, err := fr.next()
		if err != nil || op != ws.OpText || !bytes.Equal(got, payload) {
			t.Fatalf("n=%d: frameReader = %v, %d bytes, %v", n, op, len(got), err)
		}
	}
}

func TestFragmentedMessageIsJoined(t *testing.T) {
	var b bytes.Buffer
	_ = ws.WriteFrame(&b, ws.NewFrame(ws.OpText, false, []byte(`42["a",`)))
	_ = ws.WriteFrame(&b, ws.NewPingFrame([]byte("p"))) // control frames may come between fragments
	_ = ws.WriteFrame(&b, ws.NewFrame(ws.OpContinuation, true, []byte(`{}]`)))
	_ = ws.WriteFrame(&b, ws.NewTextFrame([]byte(`42["b"]`)))
	fr := frameReader{br: bufio.NewReader(&b)}
	for _, want := range []struct {
		op   ws.OpCode
		data string
	}{{ws.OpPing, "p"}, {ws.OpText, `42["a",{}]`}, {ws.OpText, `42["b"]`}} {
		op, p, err := fr.next()
		if err != nil || op != want.op || string(p) != want.data {
			t.Fatalf("next() = %v %q %v; want %v %q", op, p, err, want.op, want.data)
		}
	}
}

func TestSocketURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:3001":  "ws://127.0.0.1:3001/socket.io/?EIO=4&transport=websocket",
		"https://example.org/x/": "wss://example.org/x/socket.io/?EIO=4&transport=websocket",
		"ws://localhost:1/":      "ws://localhost:1/socket.io/?EIO=4&transport=websocket",
	} {
		got, err := SocketURL(in)
		if err != nil || got != want {
			t.Errorf("SocketURL(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := SocketURL("ftp://x"); err == nil || !strings.Contains(err.Error(), "scheme") {
		t.Errorf("ftp URL accepted: %v", err)
	}
}
