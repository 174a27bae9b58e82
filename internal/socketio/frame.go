package socketio

import (
	"bytes"
	"compress/flate"
	"io"
	"sync"

	"github.com/bandsync/bandsync/internal/wsframe"
)

// Frame is one server-to-client WebSocket message, header included, encoded
// once and shared by every connection it is queued to. Server frames are
// not masked, so the same bytes are valid on every connection: a broadcast
// to a thousand members costs one encoding and a thousand pointer copies.
// Frame is immutable after construction except for its lazily built
// compressed form.
type Frame struct {
	plain    []byte
	hdrLen   int
	volatile bool
	// seq is the recovery offset carried in the frame, 0 for none.
	seq uint64

	deflateOnce sync.Once
	deflated    []byte
}

// newFrame wraps an Engine.IO text packet in a WebSocket frame.
func newFrame(op byte, payload []byte) *Frame {
	h := wsframe.Len(len(payload))
	b := make([]byte, 0, h+len(payload))
	b = wsframe.AppendHeader(b, op, false, len(payload))
	b = append(b, payload...)
	return &Frame{plain: b, hdrLen: h}
}

// maxHeader is the longest unmasked WebSocket header (RFC 6455 5.2).
const maxHeader = 10

// eventFrame builds the frame of an event (wsframe.AppendEvent) in one
// allocation: the packet is appended after room for the longest header,
// and the header, whose length depends on the packet's, is then written
// just in front of it. A broadcast's payload used to be copied three
// times (encoded, wrapped in a packet, framed); at 625 bands a seek's
// snapshot copies were a third of the server's allocations.
func eventFrame(event string, body []byte, offset string) *Frame {
	b := make([]byte, maxHeader, maxHeader+wsframe.EventLen(event, body, offset))
	b = wsframe.AppendEvent(b, event, body, offset)
	return headed(b)
}

// headed writes, in front of the packet at b[maxHeader:], the header that
// frames it, and returns the frame.
func headed(b []byte) *Frame {
	n := len(b) - maxHeader
	h := wsframe.Len(n)
	wsframe.AppendHeader(b[maxHeader-h:maxHeader-h], wsframe.OpText, false, n)
	return &Frame{plain: b[maxHeader-h:], hdrLen: h}
}

// payload is the Engine.IO packet the frame carries.
func (f *Frame) payload() []byte { return f.plain[f.hdrLen:] }

// bytesFor returns what to write to a connection: the compressed form when
// the connection negotiated permessage-deflate and the payload reaches the
// threshold. With no context takeover on our side, compressing is a pure
// function of the payload, so it is done once per frame, not per member.
func (f *Frame) bytesFor(deflate bool, threshold int) []byte {
	if !deflate || len(f.plain)-f.hdrLen < threshold {
		return f.plain
	}
	f.deflateOnce.Do(f.compress)
	if f.deflated == nil {
		return f.plain
	}
	return f.deflated
}

var flateWriters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed)
	return w
}}

func (f *Frame) compress() {
	var buf bytes.Buffer
	w := flateWriters.Get().(*flate.Writer)
	w.Reset(&buf)
	_, _ = w.Write(f.payload())
	err := w.Flush()
	flateWriters.Put(w)
	out := buf.Bytes()
	// RFC 7692 7.2.1: drop the 0x00 0x00 0xff 0xff tail of the sync flush.
	if err != nil || len(out) < 4 || len(out)-4 >= len(f.payload()) {
		return // incompressible: keep sending it plain
	}
	out = out[:len(out)-4]
	d := make([]byte, 0, wsframe.Len(len(out))+len(out))
	d = wsframe.AppendHeader(d, wsframe.OpText, true, len(out))
	f.deflated = append(d, out...)
}

var flateReaders = sync.Pool{New: func() any { return flate.NewReader(nil) }}

// deflateTail restores the tail RFC 7692 removes from each message.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// inflate decompresses one permessage-deflate message, refusing output
// beyond limit bytes so a small compressed frame cannot expand into an
// unbounded allocation.
func inflate(msg []byte, limit int) ([]byte, error) {
	r := flateReaders.Get().(io.ReadCloser)
	defer flateReaders.Put(r)
	if err := r.(flate.Resetter).Reset(io.MultiReader(bytes.NewReader(msg), bytes.NewReader(deflateTail)), nil); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	n, err := io.Copy(&out, io.LimitReader(r, int64(limit)+1))
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil, err
	}
	if n > int64(limit) {
		return nil, errTooLarge
	}
	return out.Bytes(), nil
}
