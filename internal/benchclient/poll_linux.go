//go:build linux

package benchclient

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/gobwas/ws"

	"github.com/bandsync/bandsync/internal/epoll"
	"github.com/bandsync/bandsync/internal/wsframe"
)

// On Linux, connections are read by a few epoll loops instead of a
// goroutine each. A follower receives a tick every 16 ms; with thousands
// of followers, a goroutine per connection pays a failed read, a park and
// a wake-up for every frame, and the bench ends up using as much CPU as
// the server it measures. An epoll loop reads each ready socket once into
// a shared buffer and parses every frame in it: an idle connection holds
// no goroutine and no buffer at all.

// scratchSize is each poller's read buffer: one read takes everything a
// socket holds up to this much; level-triggered epoll reports the rest.
const scratchSize = 64 << 10

type poller struct {
	set     *epoll.Set
	mu      sync.Mutex
	conns   map[int32]*Conn
	scratch []byte
}

var (
	pollersOnce sync.Once
	pollers     []*poller
	pollersErr  error
	pollNext    uint32
	pollNextMu  sync.Mutex
)

func startPollers() {
	n := max(1, runtime.GOMAXPROCS(0))
	for range n {
		set, err := epoll.New()
		if err != nil {
			pollersErr = err
			return
		}
		p := &poller{set: set, conns: make(map[int32]*Conn), scratch: make([]byte, scratchSize)}
		pollers = append(pollers, p)
		go p.loop()
	}
}

func pickPoller() *poller {
	pollNextMu.Lock()
	defer pollNextMu.Unlock()
	pollNext++
	return pollers[pollNext%uint32(len(pollers))]
}

// startPolled moves the connection off Go's network poller onto one of
// ours. It reports false (and changes nothing) when that is not possible,
// and the caller falls back to a reading goroutine.
func (c *Conn) startPolled() bool {
	pollersOnce.Do(startPollers)
	if pollersErr != nil {
		return false
	}
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	// A duplicate descriptor outlives closing the net.Conn, which takes
	// the original out of Go's poller; the duplicate belongs to no
	// poller but ours.
	fd := -1
	if cerr := rc.Control(func(f uintptr) { fd, err = syscall.Dup(int(f)) }); cerr != nil || err != nil {
		return false
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return false
	}
	syscall.CloseOnExec(fd)
	// Bytes the handshake reader already holds are the start of the
	// stream; they are parsed before the poller reads anything more.
	if n := c.fr.br.Buffered(); n > 0 {
		b, _ := c.fr.br.Peek(n)
		c.pending = append([]byte(nil), b...)
	}
	c.wmu.Lock()
	_ = c.nc.Close()
	c.nc, c.fr = nil, frameReader{}
	c.fd, c.rawFD = fd, true
	c.wmu.Unlock()

	p := pickPoller()
	if len(c.pending) > 0 {
		if err := c.consume(time.Now(), nil); err != nil {
			c.failRaw(fd, err)
			return true
		}
	}
	p.mu.Lock()
	p.conns[int32(fd)] = c
	p.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	if err := p.set.Ctl(syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.mu.Lock()
		delete(p.conns, int32(fd))
		p.mu.Unlock()
		c.failRaw(fd, err)
	}
	return true
}

// failRaw ends a connection whose descriptor the bench owns directly.
func (c *Conn) failRaw(fd int, err error) {
	c.err = err
	c.wmu.Lock()
	c.dead = true
	_ = syscall.Close(fd)
	c.wmu.Unlock()
	c.finish()
}

// loop serves the pollers' sockets for the life of the process.
func (p *poller) loop() {
	_ = p.set.Serve(512, func(events []syscall.EpollEvent) {
		for _, ev := range events {
			p.mu.Lock()
			c := p.conns[ev.Fd]
			p.mu.Unlock()
			if c != nil {
				p.service(c)
			}
		}
	})
}

// service reads a ready socket once and handles every complete frame.
func (p *poller) service(c *Conn) {
	n, err := rawIO(syscall.SYS_READ, c.fd, p.scratch)
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	if n <= 0 {
		if err == nil {
			err = errClosedByServer
		}
		p.remove(c, err)
		return
	}
	if err := c.consume(time.Now(), p.scratch[:n]); err != nil {
		p.remove(c, err)
	}
}

// consume parses the frames in pending+data, dispatching each complete
// one, and keeps an incomplete tail in pending.
func (c *Conn) consume(now time.Time, data []byte) error {
	buf := data
	if len(c.pending) > 0 {
		c.pending = append(c.pending, data...)
		buf = c.pending
	}
	off := 0
	for {
		fin, op, payload, n, err := parseFrame(buf[off:])
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		off += n
		switch {
		case op.IsControl():
			err = c.dispatch(now, op, payload)
		case !fin || op == ws.OpContinuation || c.frag != nil:
			if op != ws.OpContinuation {
				c.fragOp = op
				c.frag = c.frag[:0]
			}
			if len(c.frag)+len(payload) > maxMessage {
				return errTooLarge
			}
			c.frag = append(c.frag, payload...)
			if fin {
				err = c.dispatch(now, c.fragOp, c.frag)
				c.frag = nil
			}
		default:
			err = c.dispatch(now, op, payload)
		}
		if err != nil {
			return err
		}
	}
	rest := buf[off:]
	switch {
	case len(rest) == 0:
		c.pending = nil
	case len(c.pending) > 0:
		// rest is the tail of pending itself.
		c.pending = c.pending[:copy(c.pending, rest)]
	default:
		c.pending = append([]byte(nil), rest...)
	}
	return nil
}

// parseFrame decodes the frame at the start of b. n is 0 when b does not
// hold a whole frame yet.
func parseFrame(b []byte) (fin bool, op ws.OpCode, payload []byte, n int, err error) {
	h, hlen, ok := wsframe.Parse(b)
	switch {
	case !ok:
		return false, 0, nil, 0, nil
	case h.Length > maxMessage:
		return false, 0, nil, 0, errTooLarge
	case int64(len(b)-hlen) < h.Length:
		return false, 0, nil, 0, nil
	}
	payload = b[hlen : hlen+int(h.Length)]
	if h.Masked {
		wsframe.Mask(payload, h.Mask)
	}
	return h.Fin, ws.OpCode(h.Op), payload, hlen + int(h.Length), nil
}

// remove unregisters and closes a connection that ended.
func (p *poller) remove(c *Conn, err error) {
	_ = p.set.Ctl(syscall.EPOLL_CTL_DEL, c.fd, nil)
	p.mu.Lock()
	delete(p.conns, int32(c.fd))
	p.mu.Unlock()
	c.wmu.Lock()
	if c.dead {
		err = errClosedLocally // Close shut it down
	}
	c.dead = true
	_ = syscall.Close(c.fd)
	c.wmu.Unlock()
	c.err = err
	c.pending, c.frag = nil, nil
	c.finish()
}

// rawIO reads or writes a non-blocking descriptor without the runtime's
// syscall bookkeeping: the call cannot park the thread, and skipping it
// keeps sysmon from waking every 20 us to look for threads stuck in
// system calls, which costs the bench CPU the server should have.
func rawIO(trap uintptr, fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// writeFD writes all of b to a non-blocking socket. Client frames are
// tiny and the kernel's send buffer almost never fills; when it does, the
// writer waits briefly rather than involve the poller.
func writeFD(fd int, b []byte) error {
	deadline := time.Now().Add(10 * time.Second)
	for len(b) > 0 {
		n, err := rawIO(syscall.SYS_WRITE, fd, b)
		if n > 0 {
			b = b[n:]
		}
		switch {
		case err == nil || err == syscall.EINTR:
		case err == syscall.EAGAIN:
			if time.Now().After(deadline) {
				return errors.New("benchclient: write blocked for 10s")
			}
			time.Sleep(time.Millisecond)
		default:
			return &net.OpError{Op: "write", Net: "tcp", Err: err}
		}
	}
	return nil
}

// shutdownFD makes the poller see the end of the stream; with SO_LINGER 0
// the poller's close then resets the connection instead of leaving the
// port in TIME_WAIT.
func shutdownFD(fd int) error {
	_ = syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
	return syscall.Shutdown(fd, syscall.SHUT_RD)
}
