//go:build linux

package epoll

import (
	"errors"
	"os"
	"sync/atomic"
	"syscall"
)

// Set is an epoll instance. Register sockets with Ctl; Serve reports
// their events. Serve runs on one goroutine at a time; Ctl may be called
// from any.
type Set struct {
	fd     int
	file   *os.File
	rc     syscall.RawConn
	closed atomic.Bool
}

// New creates an empty set.
func New() (*Set, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &Set{fd: fd, file: f, rc: rc}, nil
}

// Ctl adds, modifies or removes (op is syscall.EPOLL_CTL_*) fd's
// registration.
func (s *Set) Ctl(op, fd int, ev *syscall.EpollEvent) error {
	return syscall.EpollCtl(s.fd, op, fd, ev)
}

// Serve calls handle with each batch of ready events until the set is
// closed, then returns nil; any other failure is returned. The batch is
// reused: handle must not keep it.
func (s *Set) Serve(maxEvents int, handle func([]syscall.EpollEvent)) error {
	events := make([]syscall.EpollEvent, maxEvents)
	var werr error
	// drain hands over events until none is ready, then returns false to
	// park until Go's poller reports the descriptor readable again. It
	// must drain first: Go registers descriptors edge-triggered, so
	// events still pending when it parks would not wake it.
	drain := func(fd uintptr) bool {
		for {
			n, err := syscall.EpollWait(int(fd), events, 0)
			if err != nil {
				if errors.Is(err, syscall.EINTR) {
					continue
				}
				werr = err
				return true
			}
			if n == 0 {
				return false
			}
			handle(events[:n])
		}
	}
	for {
		if err := s.rc.Read(drain); err != nil {
			if s.closed.Load() {
				return nil // a raw read on a closed file does not say os.ErrClosed
			}
			return err
		}
		if werr != nil {
			return werr
		}
	}
}

// Close ends Serve and releases the descriptor. Sockets still registered
// are left open.
func (s *Set) Close() error {
	s.closed.Store(true)
	return s.file.Close()
}
