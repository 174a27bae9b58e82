//go:build linux

package socketio

import (
	"errors"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/bandsync/bandsync/internal/epoll"

	"github.com/bandsync/bandsync/internal/wsframe"
)

// poller reads connections when the kernel says they are readable, so an
// idle connection holds no goroutine and no read buffer: at 15,000 idle
// band members a goroutine each cost 4 KB of stack apiece, more than all
// the rest of a connection's state together. Go's own netpoller cannot be
// asked "tell me when readable" without parking a goroutine per
// connection, hence this second epoll set on the same sockets.
//
// Each socket is registered one-shot: after an event exactly one goroutine
// reads it until the kernel has nothing more, handles the frames in order,
// and re-arms it. Events carry the socket's descriptor and a generation
// number, so an event for a closed socket whose descriptor was reused is
// ignored.
type poller struct {
	set *epoll.Set

	mu    sync.Mutex
	conns map[int32]*Conn
	gen   uint32
}

const readBufSize = 16 << 10

var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

func newPoller() (*poller, error) {
	set, err := epoll.New()
	if err != nil {
		return nil, err
	}
	return &poller{set: set, conns: make(map[int32]*Conn)}, nil
}

const pollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// add starts reading c; it reports false when c cannot be polled (not a
// socket the kernel knows), in which case the caller reads it with a
// goroutine.
func (p *poller) add(c *Conn) bool {
	if c.raw == nil {
		return false
	}
	fd := c.fd
	// Holding c.mu keeps close from closing the descriptor meanwhile, so
	// fd is c's and not a newer socket's that reused the number.
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return true // nothing left to read
	}
	p.mu.Lock()
	p.gen++
	c.gen = p.gen
	p.conns[int32(fd)] = c
	p.mu.Unlock()
	ev := syscall.EpollEvent{Events: pollEvents, Fd: int32(fd), Pad: int32(c.gen)}
	if err := p.set.Ctl(syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.forget(c)
		return false
	}
	c.polled = true
	return true
}

// initRaw takes the socket's descriptor before anything is queued to it,
// for the poller and for non-blocking writes.
func (c *Conn) initRaw() {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	fd := -1
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil || fd < 0 {
		return
	}
	c.raw, c.fd = raw, fd
	c.rio.readFn, c.rio.writeFn = c.readCallback, c.writevCallback
}

// rearm asks for the next readable event. The caller holds c.mu and has
// checked the connection is open, so the descriptor is still c's.
func (p *poller) rearm(c *Conn) {
	ev := syscall.EpollEvent{Events: pollEvents, Fd: int32(c.fd), Pad: int32(c.gen)}
	_ = p.set.Ctl(syscall.EPOLL_CTL_MOD, c.fd, &ev)
}

// forget stops polling c; it runs before c's socket is closed.
func (p *poller) forget(c *Conn) {
	p.mu.Lock()
	if p.conns[int32(c.fd)] == c {
		delete(p.conns, int32(c.fd))
	}
	p.mu.Unlock()
	_ = p.set.Ctl(syscall.EPOLL_CTL_DEL, c.fd, nil)
}

// run dispatches readable sockets until stop is closed; an error means
// the epoll set failed and nothing is being read any more. The set parks
// in Go's own poller between events: a thread blocked in epoll_wait
// instead cost 0.15-0.2 ms of a seek's median at fanout 50x8 on a 2-vCPU
// guest, and about a tenth of the server's CPU (docs/benchmarks.md).
func (p *poller) run(stop <-chan struct{}) error {
	go func() {
		<-stop
		_ = p.set.Close() // ends Serve
	}()
	return p.set.Serve(256, func(events []syscall.EpollEvent) {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, ev := range events {
			c := p.conns[ev.Fd]
			if c == nil || c.gen != uint32(ev.Pad) {
				continue
			}
			go c.readReady()
		}
	})
}

// readReady reads everything the socket has, handles the complete frames
// and keeps an incomplete one for next time.
func (c *Conn) readReady() {
	// Taking the lock orders this read after the previous one, which
	// released it after re-arming: the read state below passes from one
	// reading goroutine to the next through it.
	c.mu.Lock()
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	// An incomplete frame kept from the last read is read into where it
	// is, sized for the whole frame: a frame sent a byte at a time is not
	// copied again on every byte.
	var pooled *[]byte
	buf := pending
	if len(pending) == 0 {
		pooled = readBufs.Get().(*[]byte)
		buf = (*pooled)[:0]
	}
	release := func() {
		if pooled != nil {
			readBufs.Put(pooled)
			pooled = nil
		}
	}
	for {
		if len(buf) == cap(buf) {
			// A frame larger than the buffer: grow (bounded by
			// maxPayload, which consume enforces from the header).
			bigger := make([]byte, len(buf), max(2*cap(buf), readBufSize))
			copy(bigger, buf)
			release()
			buf = bigger
		}
		n, err := c.rawRead(buf[len(buf):cap(buf)])
		if n > 0 {
			c.lastRead.Store(time.Now().UnixNano())
			buf = buf[:len(buf)+n]
			used, stop := c.consume(buf)
			if stop {
				release()
				return
			}
			if used > 0 {
				buf = buf[:copy(buf, buf[used:])]
			}
			continue
		}
		if errors.Is(err, syscall.EAGAIN) {
			break
		}
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		release()
		if err == nil {
			c.close(ReasonTransportClose, nil) // orderly EOF
		} else {
			c.close(ReasonTransportError, nil)
		}
		return
	}
	c.mu.Lock()
	if len(buf) > 0 {
		c.pending = keepPartial(buf, pooled != nil)
	}
	release()
	if !c.closed {
		c.srv.poller.rearm(c)
	}
	c.mu.Unlock()
}

// keepPartial returns the incomplete frame at the start of buf in a
// buffer of its own with room for the whole frame, so later reads fill it
// in place. A buffer that is already its own and not far too big is kept.
func keepPartial(buf []byte, pooled bool) []byte {
	need := max(len(buf), 14) // the longest header
	if h, hlen, ok := wsframe.Parse(buf); ok {
		// Room for the whole frame, but not allocated on the word of a
		// header alone: growth follows the bytes that actually come.
		need = max(len(buf), min(hlen+int(h.Length), 2*len(buf)+readBufSize))
	}
	if !pooled && cap(buf) <= 2*need {
		return buf
	}
	return append(make([]byte, 0, need), buf...)
}

// rawIO is a connection's scratch for raw reads and writes. The
// callbacks handed to syscall.RawConn are made once per connection and
// leave their results here: a closure over a call's locals escapes
// through the RawConn interface, and cost two heap allocations per read
// and two per write, that is per member per broadcast. Reads and writes
// run concurrently, so each has its own fields; each has one caller at a
// time (the reader, the writer).
type rawIO struct {
	readFn, writeFn func(fd uintptr) bool
	rbuf            []byte
	iov             []syscall.Iovec // what writevCallback writes
	rn, wn          uintptr
	rerr, werr      syscall.Errno
}

func (c *Conn) readCallback(fd uintptr) bool {
	p := c.rio.rbuf
	c.rio.rn, _, c.rio.rerr = syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return true // never park: the poller says when to read again
}

func (c *Conn) writevCallback(fd uintptr) bool {
	for {
		// Raw: the socket is non-blocking, so the call never parks the
		// thread, and the runtime's syscall bookkeeping is not needed.
		c.rio.wn, _, c.rio.werr = syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&c.rio.iov[0])), uintptr(len(c.rio.iov)))
		if c.rio.werr != syscall.EINTR {
			return true
		}
	}
}

// rawRead makes one non-blocking read: the descriptor is non-blocking, and
// returning true from the callback keeps Go from parking on EAGAIN.
func (c *Conn) rawRead(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rio.rbuf = p
	err := c.raw.Read(c.rio.readFn)
	c.rio.rbuf = nil // p is a pooled buffer: do not keep it
	if err != nil {
		return 0, err
	}
	if c.rio.rerr != 0 {
		return 0, c.rio.rerr
	}
	return int(c.rio.rn), nil
}

// writeNonblocking makes one writev of c.bufs without waiting and
// consumes what the kernel took. It reports false when some is left (the
// socket buffer is full) or the write failed; a later blocking write
// finishes the job or reports the error.
func (c *Conn) writeNonblocking() bool {
	iov := c.rio.iov[:0]
	for _, b := range c.bufs {
		if len(b) == 0 {
			continue
		}
		v := syscall.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		iov = append(iov, v)
	}
	c.rio.iov = iov
	if len(iov) == 0 {
		c.bufs = c.bufs[:0]
		return true
	}
	err := c.raw.Write(c.rio.writeFn)
	clear(c.rio.iov) // let the frames go; each write clears what it set
	if err != nil || c.rio.werr != 0 {
		return false
	}
	written := int(c.rio.wn)
	for len(c.bufs) > 0 && written >= len(c.bufs[0]) {
		written -= len(c.bufs[0])
		c.bufs = c.bufs[1:]
	}
	if len(c.bufs) > 0 {
		c.bufs[0] = c.bufs[0][written:]
		return false
	}
	return true
}
