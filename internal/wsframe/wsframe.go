// Package wsframe is the one RFC 6455 frame codec of the server, the load
// tool and its relay: header parse and append, masking, and the Socket.IO
// EVENT packet every one of them writes.
//
// The header code is written by hand on purpose, and is the product's own:
// the server and the load tool parse frames out of buffers that may end
// mid-header (an epoll read takes what the kernel has), without an
// io.Reader and without allocating, which gobwas/ws's ReadHeader does not
// offer. Its tests cross-check every parse against ws.ReadHeader. Masking
// is gobwas/ws's.
package wsframe

import (
	"encoding/binary"
	"strconv"

	"github.com/gobwas/ws"
)

// Opcodes (RFC 6455 5.2).
const (
	OpContinuation byte = 0x0
	OpText         byte = 0x1
	OpBinary       byte = 0x2
	OpClose        byte = 0x8
	OpPing         byte = 0x9
	OpPong         byte = 0xA
)

// MaxHeaderLen is the longest header: 2 bytes, a 64-bit length, a mask key.
const MaxHeaderLen = 14

// MaxLength caps a parsed 64-bit payload length so it fits an int64 on
// every side of an addition; any limit a reader enforces is far below it.
const MaxLength = 1 << 62

// Header is a parsed frame header.
type Header struct {
	Fin    bool
	Rsv    byte // the three reserved bits, RSV1 as 0x4
	Op     byte
	Masked bool
	Length int64
	Mask   [4]byte
}

// Rsv1 is the bit permessage-deflate (RFC 7692) marks compressed messages with.
func (h Header) Rsv1() bool { return h.Rsv&0x4 != 0 }

// IsControl reports whether the frame is a control frame (close, ping, pong
// and the reserved 0xB-0xF).
func (h Header) IsControl() bool { return h.Op&0x8 != 0 }

// HeaderSize is the length of the header whose second byte is b1 (the
// mask bit and the length code decide it).
func HeaderSize(b1 byte) int {
	n := 2
	switch b1 & 0x7F {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// Parse parses the frame header at the start of b. ok is false when b does
// not hold all of it yet; n is the header's length. A 64-bit length over
// MaxLength is reported as MaxLength.
func Parse(b []byte) (h Header, n int, ok bool) {
	if len(b) < 2 {
		return h, 0, false
	}
	n = HeaderSize(b[1])
	if len(b) < n {
		return h, 0, false
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv = (b[0] >> 4) & 0x7
	h.Op = b[0] & 0x0F
	h.Masked = b[1]&0x80 != 0
	switch l := b[1] & 0x7F; l {
	case 126:
		h.Length = int64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		h.Length = int64(min(binary.BigEndian.Uint64(b[2:10]), MaxLength))
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		copy(h.Mask[:], b[n-4:n])
	}
	return h, n, true
}

// Len is the length of an unmasked header for a payload of n bytes.
func Len(n int) int {
	switch {
	case n < 126:
		return 2
	case n <= 0xFFFF:
		return 4
	default:
		return 10
	}
}

// AppendHeader appends a final, unmasked header (a server's) for a payload
// of n bytes, with RSV1 set when rsv1 is.
func AppendHeader(dst []byte, op byte, rsv1 bool, n int) []byte {
	return appendHeader(dst, op, rsv1, false, n)
}

func appendHeader(dst []byte, op byte, rsv1, masked bool, n int) []byte {
	b0 := 0x80 | op
	if rsv1 {
		b0 |= 0x40
	}
	var m byte
	if masked {
		m = 0x80
	}
	switch {
	case n < 126:
		return append(dst, b0, m|byte(n))
	case n <= 0xFFFF:
		return append(dst, b0, m|126, byte(n>>8), byte(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, b0, m|127), uint64(n))
	}
}

// AppendFrame appends one final, unmasked frame (a server's).
func AppendFrame(dst []byte, op byte, payload []byte) []byte {
	return append(AppendHeader(dst, op, false, len(payload)), payload...)
}

// AppendMasked appends one final frame masked with key, as a client must
// send it (RFC 6455 5.3).
func AppendMasked(dst []byte, op byte, payload []byte, key [4]byte) []byte {
	dst = appendHeader(dst, op, false, true, len(payload))
	dst = append(dst, key[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	Mask(dst[start:], key)
	return dst
}

// Mask masks or unmasks b in place with key (the operation is its own
// inverse).
func Mask(b []byte, key [4]byte) { ws.Cipher(b, key, 0) }

// AppendEvent appends the Engine.IO message carrying a Socket.IO EVENT for
// the default namespace, 42["event",<payload>], or with offset
// 42["event",<payload>,"<offset>"] as connection-state recovery expects.
// payload must be valid JSON or nil (no argument); offset is a decimal
// string or empty.
func AppendEvent(dst []byte, event string, payload []byte, offset string) []byte {
	dst = append(dst, '4', '2', '[')
	dst = strconv.AppendQuote(dst, event)
	if payload != nil {
		dst = append(dst, ',')
		dst = append(dst, payload...)
	}
	if offset != "" {
		dst = append(dst, ',', '"')
		dst = append(dst, offset...)
		dst = append(dst, '"')
	}
	return append(dst, ']')
}

// EventLen is the length AppendEvent produces for an event name that needs
// no escaping, so a frame can be built in one allocation.
func EventLen(event string, payload []byte, offset string) int {
	n := 3 + len(event) + 2 + 1
	if payload != nil {
		n += 1 + len(payload)
	}
	if offset != "" {
		n += 3 + len(offset)
	}
	return n
}
