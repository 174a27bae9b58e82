package socketio

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/bandsync/bandsync/internal/wsframe"
)

// The inputs are the exact strings socket.io-client@4 / socket.io-parser
// produce (after Engine.IO's "4" message prefix).
func TestDecodePacket(t *testing.T) {
	tests := []struct {
		in      string
		typ     PacketType
		nsp     string
		id      int64
		data    string
		wantErr string
	}{
		{in: `0`, typ: PacketConnect, nsp: "/", id: -1},
		{in: `0{"token":"abc"}`, typ: PacketConnect, nsp: "/", id: -1, data: `{"token":"abc"}`},
		{in: `0{"pid":"Xk2","offset":"17"}`, typ: PacketConnect, nsp: "/", id: -1, data: `{"pid":"Xk2","offset":"17"}`},
		{in: `0/admin,`, typ: PacketConnect, nsp: "/admin", id: -1},
		{in: `0/admin,{"a":1}`, typ: PacketConnect, nsp: "/admin", id: -1, data: `{"a":1}`},
		{in: `1`, typ: PacketDisconnect, nsp: "/", id: -1},
		{in: `2["join_session",{"sessionId":"band"}]`, typ: PacketEvent, nsp: "/", id: -1, data: `["join_session",{"sessionId":"band"}]`},
		{in: `212["clock_sync",{"t0":1.5}]`, typ: PacketEvent, nsp: "/", id: 12, data: `["clock_sync",{"t0":1.5}]`},
		{in: `2/chat,3["x",1]`, typ: PacketEvent, nsp: "/chat", id: 3, data: `["x",1]`},
		{in: `31["ok"]`, typ: PacketAck, nsp: "/", id: 1, data: `["ok"]`},
		{in: ``, wantErr: "empty packet"},
		{in: `7`, wantErr: "unknown packet type"},
		{in: `x`, wantErr: "unknown packet type"},
		{in: `51-["upload",{"_placeholder":true,"num":0}]`, wantErr: "binary packets are not supported"},
		{in: `61-0[{"_placeholder":true,"num":0}]`, wantErr: "binary packets are not supported"},
		{in: `2["join_session",{"sessionId":`, wantErr: "malformed JSON"},
		{in: `2{"a":1}`, wantErr: "EVENT payload must be an array"},
		{in: `2`, wantErr: "EVENT payload must be an array"},
		{in: `3["x"]`, wantErr: "ACK without id"},
		{in: `0[1]`, wantErr: "CONNECT payload must be an object"},
		{in: `4{"message":"x"}`, wantErr: "sent by servers only"},
		{in: `21234567890123456["x"]`, wantErr: "acknowledgement id too long"},
		{in: `2` + strings.Repeat("[", 40) + strings.Repeat("]", 40), wantErr: "nested deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := DecodePacket([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("DecodePacket(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("error %T is not a *DecodeError", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodePacket(%q): %v", tt.in, err)
			}
			if p.Type != tt.typ || p.Namespace != tt.nsp || p.ID != tt.id || string(p.Data) != tt.data {
				t.Fatalf("DecodePacket(%q) = {%d %q %d %q}, want {%d %q %d %q}", tt.in, p.Type, p.Namespace, p.ID, p.Data, tt.typ, tt.nsp, tt.id, tt.data)
			}
		})
	}
}

func TestSplitEvent(t *testing.T) {
	tests := []struct {
		in, name, arg, wantErr string
	}{
		{in: `["play",{"sessionId":"a"}]`, name: "play", arg: `{"sessionId":"a"}`},
		{in: `["play"]`, name: "play"},
		{in: `["seek",{"position":1},"extra"]`, name: "seek", arg: `{"position":1}`},
		{in: `[]`, wantErr: "without a name"},
		{in: `[42,{}]`, wantErr: "must be a string"},
		{in: `["__proto__",{}]`, name: "__proto__", arg: `{}`},
		{in: `["bad name",{}]`, wantErr: "event name must be"},
		{in: `["",{}]`, wantErr: "event name must be"},
		{in: `["` + strings.Repeat("a", 65) + `"]`, wantErr: "event name must be"},
	}
	for _, tt := range tests {
		name, arg, err := splitEvent([]byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("splitEvent(%s) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || name != tt.name || string(arg) != tt.arg {
			t.Errorf("splitEvent(%s) = %q, %s, %v; want %q, %s", tt.in, name, arg, err, tt.name, tt.arg)
		}
	}
}

// The server's side of the wire, as socket.io-client parses it.
func TestEncode(t *testing.T) {
	tests := []struct{ got, want string }{
		{string(wsframe.AppendEvent(nil, "snapshot", []byte(`{"v":1}`), "")), `42["snapshot",{"v":1}]`},
		{string(wsframe.AppendEvent(nil, "snapshot", []byte(`{"v":1}`), "17")), `42["snapshot",{"v":1},"17"]`},
		{string(wsframe.AppendEvent(nil, "stop", nil, "")), `42["stop"]`},
		{string(appendAck(nil, 12, []byte(`{"ok":true}`))), `4312[{"ok":true}]`},
		{string(connectReply("sid1", "pid1")), `40{"pid":"pid1","sid":"sid1"}`},
		{string(connectReply("sid1", "")), `40{"sid":"sid1"}`},
		{string(connectError("/admin", "Invalid namespace")), `44/admin,{"message":"Invalid namespace"}`},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %s, want %s", tt.got, tt.want)
		}
	}
	if n, p := wsframe.EventLen("snapshot", []byte(`{"v":1}`), "17"), wsframe.AppendEvent(nil, "snapshot", []byte(`{"v":1}`), "17"); n != len(p) {
		t.Errorf("eventLen = %d, encoded length %d", n, len(p))
	}
}

func TestFrameHeader(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 1 << 20} {
		f := newFrame(wsframe.OpText, make([]byte, n))
		if got := len(f.plain) - f.hdrLen; got != n {
			t.Fatalf("payload %d: frame carries %d", n, got)
		}
		if f.plain[0] != 0x81 {
			t.Fatalf("first byte %#x, want FIN+text", f.plain[0])
		}
	}
}

// An event frame built in one allocation is byte for byte the frame of
// the packet, on both sides of every header length boundary.
func TestEventFrameMatchesFramedPacket(t *testing.T) {
	for _, n := range []int{0, 100, 107, 108, 109, 65517, 65518, 65519, 1 << 17} {
		for _, off := range []string{"", "1796000000000-3"} {
			body := []byte(`"` + strings.Repeat("x", n) + `"`)
			want := newFrame(wsframe.OpText, wsframe.AppendEvent(nil, "snapshot", body, off))
			got := eventFrame("snapshot", body, off)
			if string(got.plain) != string(want.plain) || got.hdrLen != want.hdrLen {
				t.Fatalf("body %d bytes, offset %q: frame differs (header %d vs %d, %d vs %d bytes)",
					len(body), off, got.hdrLen, want.hdrLen, len(got.plain), len(want.plain))
			}
		}
	}
}

type appended struct{ n int }

func (a appended) AppendJSON(b []byte) []byte {
	return append(strconv.AppendInt(append(b, `{"n":`...), int64(a.n), 10), '}')
}

// What the pooled encoder writes is what json.Marshal writes (HTML escaped,
// no trailing newline); a JSONAppender is taken as it appends itself.
func TestEncodedPayloadIsJSONMarshal(t *testing.T) {
	s := NewServer(Options{})
	payload := map[string]any{"message": "<a & b>", "n": 1.5, "list": []int{1, 2}}
	want, _ := json.Marshal(payload)
	for range 3 { // the second and third from a reused buffer
		f, err := s.encode("", "snapshot", payload, kindReply)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(f.payload()); got != `42["snapshot",`+string(want)+`]` {
			t.Fatalf("got %s, want the packet of %s", got, want)
		}
	}
	f, _ := s.encode("", "tick", appended{7}, kindVolatile)
	if got := string(f.payload()); got != `42["tick",{"n":7}]` || !f.volatile {
		t.Fatalf("appender: got %s (volatile %v)", got, f.volatile)
	}
	if _, err := s.encode("", "bad", func() {}, kindReply); err == nil {
		t.Fatal("a payload JSON cannot encode was sent")
	}
}

func TestCompressRoundTrip(t *testing.T) {
	payload := []byte(`42["snapshot",` + `{"message":"` + strings.Repeat("la la ", 300) + `"}]`)
	f := newFrame(wsframe.OpText, payload)
	if b := f.bytesFor(true, 1024); b[0] != 0xC1 || len(b) >= len(f.plain) {
		t.Fatalf("large frame not compressed: first byte %#x, %d vs %d bytes", b[0], len(b), len(f.plain))
	}
	if b := f.bytesFor(false, 1024); &b[0] != &f.plain[0] {
		t.Fatal("a client without deflate got the compressed frame")
	}
	small := newFrame(wsframe.OpText, []byte(`42["scroll_tick",{"positionMs":1}]`))
	if b := small.bytesFor(true, 1024); b[0] != 0x81 {
		t.Fatal("a frame under the threshold was compressed")
	}
	body := f.deflated[wsframe.Len(len(f.deflated)-2):]
	if f.deflated[1]&0x7f == 126 {
		body = f.deflated[4:]
	}
	out, err := inflate(body, 1<<20)
	if err != nil || string(out) != string(payload) {
		t.Fatalf("inflate: %v, equal=%v", err, string(out) == string(payload))
	}
	if _, err := inflate(body, 100); !errors.Is(err, errTooLarge) {
		t.Fatalf("inflate past the limit: %v, want errTooLarge", err)
	}
}
