package socketio

// maxPendingVolatile bounds the frames a volatile one may queue behind
// even while no write is under way.
const maxPendingVolatile = 8

// controlSlack is how far past SOCKET_WRITE_QUEUE control frames may go:
// they bypass the ordered stream (and a replay hold), but a client that
// never reads them is still dropped, not buffered for.
const controlSlack = 16

// enqueue queues a frame for writing. It never blocks: a connection whose
// queue is full is closed instead of slowing the sender, and a volatile
// frame is dropped when anything is still pending.
func (c *Conn) enqueue(f *Frame) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	if c.holding {
		if len(c.held) >= c.srv.opts.WriteQueueSize {
			c.overflowAndUnlock()
			return false
		}
		c.held = append(c.held, f)
		c.mu.Unlock()
		return true
	}
	// Behind means a write is under way and more is already waiting
	// behind it; a writer that merely has not been scheduled yet is not
	// behind. Ticks are worthless late, so they are not queued there.
	pending := c.qlenLocked()
	if f.volatile && pending > 0 && (c.inWrite || pending >= maxPendingVolatile) {
		c.mu.Unlock()
		c.srv.stats.volatileDropped.Add(1)
		return false
	}
	if pending >= c.srv.opts.WriteQueueSize {
		c.overflowAndUnlock()
		return false
	}
	c.pushAndUnlock(f)
	return true
}

// enqueueControl queues a frame even during a replay hold: pongs and
// pings are not part of the ordered event stream.
func (c *Conn) enqueueControl(f *Frame) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if c.qlenLocked() >= c.srv.opts.WriteQueueSize+controlSlack {
		c.overflowAndUnlock()
		return
	}
	c.pushAndUnlock(f)
}

// queuePong answers a client's ping. Only the latest unanswered ping is
// answered, in the writer's next batch, so a flood of pings from a client
// that does not read costs 125 bytes, not a frame each.
func (c *Conn) queuePong(payload []byte) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.pong = append(c.pong[:0], payload...)
	c.pongDue = true
	c.startWriterAndUnlock()
}

// pushAndUnlock appends f to the queue, releases c.mu, and hands the
// connection to a writer if none is draining it.
func (c *Conn) pushAndUnlock(f *Frame) {
	if len(c.queue) == cap(c.queue) && c.qhead > 0 && c.qhead >= len(c.queue)/2 {
		// Reuse the drained head before growing; moving the live half
		// is paid for by the appends that filled the other half.
		n := copy(c.queue, c.queue[c.qhead:])
		clear(c.queue[n:])
		c.queue, c.qhead = c.queue[:n], 0
	}
	c.queue = append(c.queue, f)
	c.startWriterAndUnlock()
}

// startWriterAndUnlock releases c.mu and hands the connection to a writer
// if none is draining it.
func (c *Conn) startWriterAndUnlock() {
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		c.srv.schedule(c)
	}
}

// overflowAndUnlock releases c.mu and closes a connection that let its
// queue fill.
func (c *Conn) overflowAndUnlock() {
	c.mu.Unlock()
	c.srv.stats.overflows.Add(1)
	go c.close(ReasonQueueOverflow, nil)
}

// qlenLocked is the number of frames waiting; the caller holds c.mu.
func (c *Conn) qlenLocked() int { return len(c.queue) - c.qhead }
