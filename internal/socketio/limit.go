package socketio

import (
	"time"

	"golang.org/x/time/rate"

	"github.com/bandsync/bandsync/internal/wsframe"
)

// inboundLimit charges a socket for what it sends before the server does
// any work for it: every frame (pings, pongs and namespace CONNECTs
// included) against a frame budget, and every message's bytes against a
// byte budget before it is inflated or parsed. The events layer's own
// limiter counts events on top; this one only bounds what a client can
// make the transport do, so it is set well above any honest client.
//
// Only the socket's reader touches it, so it needs no lock of its own
// (rate.Limiter has one; it is uncontended).
type inboundLimit struct {
	frames, bytes *rate.Limiter
	// refused counts the frames refused since windowStart; a socket that
	// sends another whole budget's worth in one second past its limit is
	// flooding, and is closed rather than read for ever.
	refused     int
	windowStart time.Time
}

// incompleteTimeout bounds how long a fragmented message or a frame that
// has not fully arrived may stay unfinished while the client keeps the
// connection alive with other frames. A variable for the tests.
var incompleteTimeout = 20 * time.Second

// admitFrame charges one frame, and a data frame's n payload bytes (a
// control frame's are at most 125 and cost nothing to parse). A frame
// refused here is dropped unanswered.
func (c *Conn) admitFrame(now time.Time, op byte, n int64) bool {
	l := &c.inbound
	if l.frames == nil {
		o := &c.srv.opts
		l.frames = rate.NewLimiter(rate.Limit(o.MaxFrameRate), o.MaxFrameRate)
		l.bytes = rate.NewLimiter(rate.Limit(o.MaxReadRate), max(o.MaxReadRate, 2*o.MaxPayload))
	}
	if l.frames.AllowN(now, 1) && (op >= wsframe.OpClose || l.bytes.AllowN(now, int(n))) {
		return true
	}
	c.srv.stats.refusedFrames.Add(1)
	if now.Sub(l.windowStart) > time.Second {
		l.windowStart, l.refused = now, 0
	}
	l.refused++
	if l.refused > c.srv.opts.MaxFrameRate {
		c.srv.opts.Logger.Warn("closing a socket that keeps sending past its frame budget",
			"remote", c.remote, "socketId", c.id, "refusedInOneSecond", l.refused)
		c.kick(closeFrame(1008, "message rate exceeded"))
	}
	return false
}

// inflateBudget is how many bytes a compressed message may inflate to
// now: maxPayload, or less while the socket has spent its byte budget.
func (c *Conn) inflateBudget(now time.Time) int {
	if c.inbound.bytes == nil {
		return c.srv.opts.MaxPayload
	}
	return min(c.srv.opts.MaxPayload, max(0, int(c.inbound.bytes.TokensAt(now))))
}

// chargeInflated takes the inflated size of a message from the byte
// budget (its wire size was charged on arrival).
func (c *Conn) chargeInflated(now time.Time, n int) {
	if b := c.inbound.bytes; b != nil {
		// A reservation may overdraw: the debt delays the next messages.
		b.ReserveN(now, min(n, b.Burst()))
	}
}

// kick closes the connection as the server's decision: it is not kept
// for recovery, so a flooding client cannot come straight back as itself.
func (c *Conn) kick(frame []byte) {
	c.mu.Lock()
	c.kicked = true
	c.mu.Unlock()
	c.close(ReasonServerDisconnect, frame)
}
