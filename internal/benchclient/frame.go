package benchclient

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"

	"github.com/gobwas/ws"

	"github.com/bandsync/bandsync/internal/wsframe"
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
				wsframe.Mask(r.ctrl, mask)
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
			wsframe.Mask(msg[start:], mask)
		}
		if fin {
			r.buf = msg[:0]
			return op, msg[1:], nil
		}
	}
}

// header reads one frame header with wsframe's parser: Peek keeps the
// bytes in br's buffer, so nothing is copied or allocated.
func (r *frameReader) header() (fin bool, op ws.OpCode, n int, mask [4]byte, masked bool, err error) {
	b, err := r.br.Peek(2)
	if err != nil {
		return
	}
	if b, err = r.br.Peek(wsframe.HeaderSize(b[1])); err != nil {
		return
	}
	h, hlen, _ := wsframe.Parse(b)
	_, _ = r.br.Discard(hlen)
	if h.Length > maxMessage {
		err = errTooLarge
		return
	}
	return h.Fin, ws.OpCode(h.Op), int(h.Length), h.Mask, h.Masked, nil
}

// appendClientFrame appends one final frame masked with a fresh key, as a
// client must send it (RFC 6455 5.3).
func appendClientFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], rand.Uint32())
	return wsframe.AppendMasked(dst, byte(op), payload, key)
}
