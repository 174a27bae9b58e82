package wsframe

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// FuzzParse cross-checks Parse against gobwas/ws's header reader on
// arbitrary bytes: both must agree on whether a header is complete and,
// when it is, on every field. The one deliberate difference: a 64-bit
// length with its top bit set, which ws refuses and Parse reports as
// MaxLength, beyond any reader's limit.
func FuzzParse(f *testing.F) {
	for _, s := range [][]byte{
		{0x81, 0x05}, {0x81, 0x85, 1, 2, 3, 4}, {0x82, 0x7E, 0x01, 0x00}, {0x82, 0xFE, 0xFF, 0xFF, 1, 2, 3, 4},
		{0x01, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0}, {0xC1, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9},
		{0x88, 0x80}, {0x89}, {}, {0xF2, 0x7F, 0x40, 0, 0, 0, 0, 0, 0, 1},
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, ok := Parse(b)
		want, err := ws.ReadHeader(bytes.NewReader(b))
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			if ok {
				t.Fatalf("Parse(% x) = %+v, complete; ws: %v", b, h, err)
			}
			return
		case !ok:
			t.Fatalf("Parse(% x) incomplete; ws read %+v, %v", b, want, err)
		case n != HeaderSize(b[1]) || n > MaxHeaderLen:
			t.Fatalf("Parse(% x) took %d bytes, HeaderSize %d", b, n, HeaderSize(b[1]))
		case errors.Is(err, ws.ErrHeaderLengthMSB):
			if h.Length != MaxLength {
				t.Fatalf("Parse(% x) length %d, want MaxLength for a length with its top bit set", b, h.Length)
			}
			return
		case err != nil:
			t.Fatalf("ws refused % x: %v; Parse: %+v", b, err, h)
		}
		wantLen := min(want.Length, MaxLength)
		if h.Fin != want.Fin || h.Rsv != want.Rsv || h.Op != byte(want.OpCode) || h.Masked != want.Masked ||
			h.Length != wantLen || h.Mask != want.Mask || h.Rsv1() != (want.Rsv&0x4 != 0) || h.IsControl() != want.OpCode.IsControl() {
			t.Fatalf("Parse(% x) = %+v; ws = %+v", b, h, want)
		}
	})
}

// Every length encoding (7-bit up to 125, 16-bit from 126, 64-bit from
// 65536), masked and not, written by this package, reads back the same
// through Parse and through ws.ReadHeader, in the shortest form, and byte
// for byte as ws.WriteHeader would write it.
func TestLengthEncodingsRoundTrip(t *testing.T) {
	key := [4]byte{0xA1, 0xB2, 0xC3, 0xD4}
	for _, tc := range []struct{ n, hdr int }{
		{0, 2}, {1, 2}, {125, 2}, {126, 4}, {127, 4}, {65535, 4}, {65536, 10}, {1 << 20, 10},
	} {
		payload := bytes.Repeat([]byte{'x'}, tc.n)
		for _, masked := range []bool{false, true} {
			var frame []byte
			if masked {
				frame = AppendMasked(nil, OpText, payload, key)
			} else {
				frame = AppendFrame(nil, OpText, payload)
			}
			hlen := tc.hdr
			if masked {
				hlen += 4
			}
			if len(frame) != hlen+tc.n {
				t.Fatalf("n=%d masked=%v: frame is %d bytes, want %d", tc.n, masked, len(frame), hlen+tc.n)
			}
			if !masked && Len(tc.n) != tc.hdr {
				t.Errorf("Len(%d) = %d, want %d", tc.n, Len(tc.n), tc.hdr)
			}
			h, n, ok := Parse(frame)
			if !ok || n != hlen || h.Length != int64(tc.n) || !h.Fin || h.Op != OpText || h.Masked != masked {
				t.Fatalf("n=%d masked=%v: Parse = %+v, %d, %v", tc.n, masked, h, n, ok)
			}
			wh, err := ws.ReadHeader(bytes.NewReader(frame))
			if err != nil || wh.Length != int64(tc.n) || wh.Masked != masked || (masked && wh.Mask != key) {
				t.Fatalf("n=%d masked=%v: ws.ReadHeader = %+v, %v", tc.n, masked, wh, err)
			}
			var ref bytes.Buffer
			if err := ws.WriteHeader(&ref, wh); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ref.Bytes(), frame[:hlen]) {
				t.Fatalf("n=%d masked=%v: header % x, ws writes % x", tc.n, masked, frame[:hlen], ref.Bytes())
			}
			body := frame[hlen:]
			if masked {
				if tc.n > 0 && bytes.Equal(body, payload) {
					t.Fatalf("n=%d: masked payload sent in clear", tc.n)
				}
				Mask(body, h.Mask)
			}
			if !bytes.Equal(body, payload) {
				t.Fatalf("n=%d masked=%v: payload did not survive", tc.n, masked)
			}
		}
	}
	// Every prefix of a header is incomplete, never misread.
	frame := AppendMasked(nil, OpBinary, make([]byte, 70000), key)
	for i := range 14 {
		if _, _, ok := Parse(frame[:i]); ok {
			t.Fatalf("Parse of a %d-byte prefix of a 14-byte header reported complete", i)
		}
	}
}

func TestRsv1AndControlBits(t *testing.T) {
	h, _, _ := Parse(AppendHeader(nil, OpText, true, 3))
	if !h.Rsv1() || h.Rsv != 0x4 || h.IsControl() {
		t.Fatalf("compressed text header parsed as %+v", h)
	}
	for _, op := range []byte{OpClose, OpPing, OpPong} {
		if h, _, _ := Parse(AppendHeader(nil, op, false, 0)); !h.IsControl() || h.Rsv1() {
			t.Fatalf("op %#x parsed as %+v", op, h)
		}
	}
}

// AppendEvent writes what socket.io-client reads as emit(event, payload)
// (and with offset, what connection-state recovery reads as the offset),
// in exactly EventLen bytes.
func TestAppendEvent(t *testing.T) {
	for _, tc := range []struct {
		event, payload, offset, want string
	}{
		{"scroll_tick", `{"positionMs":1.5}`, "", `42["scroll_tick",{"positionMs":1.5}]`},
		{"snapshot", `{"v":1}`, "17", `42["snapshot",{"v":1},"17"]`},
		{"ping_me", "", "", `42["ping_me"]`},
	} {
		var payload []byte
		if tc.payload != "" {
			payload = []byte(tc.payload)
		}
		got := AppendEvent(nil, tc.event, payload, tc.offset)
		if string(got) != tc.want {
			t.Errorf("AppendEvent = %s, want %s", got, tc.want)
		}
		if n := EventLen(tc.event, payload, tc.offset); n != len(got) {
			t.Errorf("EventLen = %d, encoded %d", n, len(got))
		}
		var arr []json.RawMessage
		if err := json.Unmarshal(got[2:], &arr); err != nil || string(arr[0]) != `"`+tc.event+`"` {
			t.Errorf("%s: not a JSON array naming the event: %v", got, err)
		}
	}
	// A name that needs escaping is still valid JSON.
	got := AppendEvent(nil, `a"b`, nil, "")
	if !json.Valid(got[2:]) || !strings.Contains(string(got), `"a\"b"`) {
		t.Errorf("escaped name: %s", got)
	}
}

func BenchmarkParse(b *testing.B) {
	frame := AppendMasked(nil, OpText, make([]byte, 300), [4]byte{1, 2, 3, 4})
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := Parse(frame); !ok {
			b.Fatal("incomplete")
		}
	}
}
