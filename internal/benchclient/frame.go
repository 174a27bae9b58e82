package benchclient

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"

	"github.com/gobwas/ws"
)

// maxMessage bounds one reassembled message; BandSync's largest, a
// snapshot of a full session, is a few kilobytes.
const maxMessage = 4 << 20

var errTooLarge = errors.New("benchclient: message too large")

// frameReader reads WebSocket messages from br into reused buffers. It is
// written by hand rather than with wsutil so reading a tick allocates
// nothing.
type frameReader struct {
	br   *bufio.Reader
	buf  []byte // the data message being read, fragments joined
	ctrl []byte // the last control frame's payload
}

// next returns the opcode and payload of the next message, unmasked and
// with fragments joined; a control frame that arrives between fragments
// is returned on its own, and the message resumes on the following call.
// The payload is valid until the following call.
func (r *frameReader) next() (ws.OpCode, []byte, error) {
	var op ws.OpCode
	msg := r.buf
	if len(msg) > 0 {
		op = ws.OpCode(msg[0]) // a message in progress keeps its opcode in front (see below)
	}
	for {
		fin, fop, n, mask, masked, err := r.header()
		if err != nil {
			return 0, nil, err
		}
		if fop.IsControl() {
			if n > 125 {
				return 0, nil, errors.New("benchclient: control frame over 125 bytes")
			}
			if r.ctrl == nil {
				r.ctrl = make([]byte, 125)
			}
			r.ctrl = r.ctrl[:n]
			if _, err := io.ReadFull(r.br, r.ctrl); err != nil {
				return 0, nil, err
			}
			if masked {
				ws.Cipher(r.ctrl, mask, 0)
			}
			r.buf = msg
			return fop, r.ctrl, nil
		}
		if len(msg) == 0 {
			// The first byte of a message in progress remembers its
			// opcode, so a control frame in between loses nothing.
			op = fop
			msg = append(msg, byte(fop))
		}
		if len(msg)+n > maxMessage {
			return 0, nil, errTooLarge
		}
		start := len(msg)
		if cap(msg) < start+n {
			grown := make([]byte, start, max(2*cap(msg), start+n, 256))
			copy(grown, msg)
			msg = grown
		}
		msg = msg[:start+n]
		if _, err := io.ReadFull(r.br, msg[start:]); err != nil {
			return 0, nil, err
		}
		if masked {
			ws.Cipher(msg[start:], mask, 0)
		}
		if fin {
			r.buf = msg[:0]
			return op, msg[1:], nil
		}
	}
}

func (r *frameReader) header() (fin bool, op ws.OpCode, n int, mask [4]byte, masked bool, err error) {
	b, err := r.br.Peek(2)
	if err != nil {
		return
	}
	fin = b[0]&0x80 != 0
	op = ws.OpCode(b[0] & 0x0f)
	masked = b[1]&0x80 != 0
	l := int(b[1] & 0x7f)
	_, _ = r.br.Discard(2)
	switch l {
	case 126:
		if b, err = r.br.Peek(2); err != nil {
			return
		}
		l = int(binary.BigEndian.Uint16(b))
		_, _ = r.br.Discard(2)
	case 127:
		if b, err = r.br.Peek(8); err != nil {
			return
		}
		v := binary.BigEndian.Uint64(b)
		_, _ = r.br.Discard(8)
		if v > maxMessage {
			err = errTooLarge
			return
		}
		l = int(v)
	}
	if masked {
		if b, err = r.br.Peek(4); err != nil {
			return
		}
		copy(mask[:], b)
		_, _ = r.br.Discard(4)
	}
	return fin, op, l, mask, masked, nil
}

// appendFrame appends one final WebSocket frame. Client frames must be
// masked (RFC 6455 5.3); server frames must not be.
func appendFrame(dst []byte, op ws.OpCode, payload []byte, masked bool) []byte {
	n := len(payload)
	var mbit byte
	if masked {
		mbit = 0x80
	}
	dst = append(dst, 0x80|byte(op))
	switch {
	case n < 126:
		dst = append(dst, mbit|byte(n))
	case n <= 0xFFFF:
		dst = append(dst, mbit|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, mbit|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	if !masked {
		return append(dst, payload...)
	}
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], rand.Uint32())
	dst = append(dst, key[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	ws.Cipher(dst[start:], key, 0)
	return dst
}
