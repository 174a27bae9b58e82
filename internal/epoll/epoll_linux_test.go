//go:build linux

package epoll

import (
	"syscall"
	"testing"
	"time"
)

// A socket's data wakes Serve, which reports that socket, and Close ends
// Serve.
func TestServeReportsReadableSocketsAndEndsOnClose(t *testing.T) {
	set, err := New()
	if err != nil {
		t.Fatal(err)
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	if err := set.Ctl(syscall.EPOLL_CTL_ADD, fds[0], &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fds[0])}); err != nil {
		t.Fatal(err)
	}
	ready := make(chan int32, 16)
	served := make(chan error, 1)
	go func() {
		served <- set.Serve(8, func(evs []syscall.EpollEvent) {
			var buf [16]byte
			for _, ev := range evs {
				_, _ = syscall.Read(int(ev.Fd), buf[:]) // level-triggered: consume it
				ready <- ev.Fd
			}
		})
	}()
	// Twice: the second write arrives after Serve has parked again.
	for range 2 {
		time.Sleep(20 * time.Millisecond)
		if _, err := syscall.Write(fds[1], []byte("x")); err != nil {
			t.Fatal(err)
		}
		select {
		case fd := <-ready:
			if fd != int32(fds[0]) {
				t.Fatalf("event for fd %d, want %d", fd, fds[0])
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a readable socket did not wake Serve")
		}
	}
	if err := set.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end Serve")
	}
}
