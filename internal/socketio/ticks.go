package socketio

import "time"

// NoTicks is the SetTickInterval of a client that takes no scroll_tick.
const NoTicks time.Duration = -1

// SetTickInterval sets how often the connection gets the volatile events
// (scroll_tick): 0 for every one, NoTicks for none, d for at most one per d.
// A client that draws the position from the anchor and its synced clock
// needs none, and every tick it skips is a packet the server never sends.
func (c *Conn) SetTickInterval(d time.Duration) {
	c.tickEvery.Store(int64(d))
	c.tickDue.Store(0)
}

// wantsTick reports whether a volatile frame at now goes to the connection,
// and books the next one. The schedule advances from when a tick was due,
// not from when it came, so a rate of 100 ms over 16 ms ticks averages 100
// ms instead of drifting towards the next multiple of 16.
func (c *Conn) wantsTick(now int64) bool {
	every := c.tickEvery.Load()
	switch {
	case every == 0:
		return true
	case every < 0:
		return false
	}
	due := c.tickDue.Load()
	if now < due {
		return false
	}
	next := due + every
	if next <= now {
		next = now + every // far behind (or the first tick): start afresh
	}
	c.tickDue.Store(next)
	return true
}
