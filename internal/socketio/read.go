package socketio

import (
	"errors"
	"io"
	"net"
	"time"
	"unicode/utf8"

	"github.com/bandsync/bandsync/internal/wsframe"
)

var errTooLarge = errors.New("message exceeds maxPayload")

// readBlocking reads with a goroutine of its own until the connection
// ends: the fallback where the event-driven reader is not available.
func (c *Conn) readBlocking(src io.Reader) {
	buf := make([]byte, 0, 4096)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := src.Read(buf[len(buf):cap(buf)])
		if n > 0 {
			c.lastRead.Store(time.Now().UnixNano())
			buf = buf[:len(buf)+n]
			used, stop := c.consume(buf)
			if stop {
				return
			}
			buf = buf[:copy(buf, buf[used:])]
		}
		if err != nil {
			c.close(readErrReason(err), nil)
			return
		}
	}
}

// consume parses and handles the complete frames at the start of buf and
// returns how many bytes it used; the rest is an incomplete frame to be
// completed by the next read. It reports stop when the connection was
// closed. Payloads are handled before consume returns, so they may point
// into buf.
func (c *Conn) consume(buf []byte) (used int, stop bool) {
	now := time.Now()
	used, stop = c.consumeFrames(buf, now)
	if stop {
		return used, true
	}
	if c.frag == nil && used == len(buf) {
		return used, false
	}
	// Something is unfinished: a frame still arriving or a fragmented
	// message. Either is held for a bounded time only.
	if c.fragSince.IsZero() {
		c.fragSince = now
	} else if now.Sub(c.fragSince) > incompleteTimeout {
		c.close(ReasonParseError, closeFrame(1008, "message not completed in time"))
		return used, true
	}
	return used, false
}

func (c *Conn) consumeFrames(buf []byte, now time.Time) (used int, stop bool) {
	max := int64(c.srv.opts.MaxPayload)
	for {
		h, hlen, ok := wsframe.Parse(buf[used:])
		if !ok {
			return used, false
		}
		switch {
		case !h.Masked:
			c.close(ReasonParseError, closeFrame(1002, "client frames must be masked"))
			return used, true
		case h.Rsv&0x3 != 0 || (h.Rsv1() && (h.Op == wsframe.OpContinuation || h.Op >= wsframe.OpClose)):
			// RFC 6455 5.2: no extension we negotiated defines these.
			c.close(ReasonParseError, closeFrame(1002, "reserved bits set"))
			return used, true
		case h.Length > max || int64(len(c.frag))+h.Length > max:
			c.srv.stats.tooLarge.Add(1)
			c.close(ReasonParseError, closeFrame(1009, "message exceeds maxPayload"))
			return used, true
		case h.Op >= wsframe.OpClose && (!h.Fin || h.Length > 125):
			c.close(ReasonParseError, closeFrame(1002, "malformed control frame"))
			return used, true
		}
		total := hlen + int(h.Length)
		if len(buf)-used < total {
			return used, false
		}
		payload := buf[used+hlen : used+total]
		used += total
		if h.Op != wsframe.OpClose && !c.admitFrame(now, h.Op, h.Length) {
			if c.frag != nil || h.Op == wsframe.OpContinuation {
				// A message with a hole in it cannot be handled.
				c.kick(closeFrame(1008, "message rate exceeded"))
			}
			if c.isClosed() {
				return used, true
			}
			continue
		}
		wsframe.Mask(payload, h.Mask)
		c.frame(h, payload)
		if c.isClosed() {
			return used, true
		}
		if c.frag == nil {
			c.fragSince = time.Time{}
		}
	}
}

// frame handles one WebSocket frame, assembling fragmented messages.
func (c *Conn) frame(h wsframe.Header, payload []byte) {
	switch h.Op {
	case wsframe.OpPing:
		c.queuePong(payload)
	case wsframe.OpPong:
	case wsframe.OpClose:
		c.close(ReasonTransportClose, closeFrame(1000, ""))
	case wsframe.OpText, wsframe.OpBinary:
		if c.frag != nil {
			c.close(ReasonParseError, closeFrame(1002, "new message inside a fragmented one"))
			return
		}
		if h.Fin {
			c.message(h.Op, h.Rsv1(), payload)
			return
		}
		// The payload points into the read buffer: keep a copy.
		c.frag = append(make([]byte, 0, len(payload)*2), payload...)
		c.fragOp, c.fragRsv1 = h.Op, h.Rsv1()
	case wsframe.OpContinuation:
		if c.frag == nil {
			c.close(ReasonParseError, closeFrame(1002, "continuation without a message"))
			return
		}
		c.frag = append(c.frag, payload...)
		if h.Fin {
			msg := c.frag
			c.frag = nil
			c.message(c.fragOp, c.fragRsv1, msg)
		}
	default:
		c.close(ReasonParseError, closeFrame(1002, "unknown opcode"))
	}
}

// message handles one complete WebSocket message: it inflates and checks
// what RFC 6455 and RFC 7692 require before Engine.IO sees it.
func (c *Conn) message(op byte, compressed bool, data []byte) {
	if compressed {
		if !c.deflate {
			c.close(ReasonParseError, closeFrame(1002, "compressed frame without permessage-deflate"))
			return
		}
		now := time.Now()
		budget := c.inflateBudget(now)
		out, err := inflate(data, budget)
		if errors.Is(err, errTooLarge) && budget < c.srv.opts.MaxPayload {
			// Over what the socket may have inflated now, not over the
			// limit: refused like a frame over its rate.
			c.srv.stats.refusedFrames.Add(1)
			return
		}
		if errors.Is(err, errTooLarge) {
			c.srv.stats.tooLarge.Add(1)
			c.close(ReasonParseError, closeFrame(1009, "message exceeds maxPayload"))
			return
		}
		if err != nil {
			c.close(ReasonParseError, closeFrame(1007, "bad compressed data"))
			return
		}
		c.chargeInflated(now, len(out))
		data = out
	}
	if op == wsframe.OpText && !utf8.Valid(data) {
		c.close(ReasonParseError, closeFrame(1007, "text message is not valid UTF-8"))
		return
	}
	c.srv.stats.framesIn.Add(1)
	c.engineIO(op, data)
}

func readErrReason(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ReasonPingTimeout
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return ReasonTransportClose
	}
	return ReasonTransportError
}
