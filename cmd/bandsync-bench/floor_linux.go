package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/bandsync/bandsync/internal/benchclient"
)

// The floor scenario answers "can this machine carry the shape at all?"
// before any server is blamed. It sends one floorPacket-byte write per
// connection per tick over loopback TCP from this process and reads them
// in a child process: no WebSocket, no Socket.IO, no session work, and no
// Go runtime in the hot loops (raw syscalls on locked threads, no
// allocation). What it cannot deliver, no server on this machine can.
//
// It is written by hand because it is the measurement itself: a library
// would add exactly the costs it is meant to leave out.

// floorPacket is about the size of a scroll_tick frame on the wire.
const floorPacket = 150

// floorEnv carries the listener address and connection count to the
// child; its presence makes the binary a floor receiver.
const floorEnv = "BANDSYNC_BENCH_FLOOR_RECEIVER"

// floorResult is what the receiver reports over its stdout.
type floorResult struct {
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	CPU     float64 `json:"cpuSeconds"`
	// Latency is send to receipt of the packets in the window, from the
	// send time each packet carries: the least any server's tick lag or
	// seek latency can be at this shape on this machine.
	Latency benchclient.Summary `json:"latency"`
}

// runFloorReceiverIfChild turns the process into the floor's receiver
// when it was started as one, and reports whether it was.
func runFloorReceiverIfChild() bool {
	spec := os.Getenv(floorEnv)
	if spec == "" {
		return false
	}
	if err := floorReceive(spec, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bandsync-bench floor receiver:", err)
		os.Exit(1)
	}
	return true
}

// runFloor measures the loopback floor for S x M connections at one
// packet per connection per tick.
func runFloor(ctx context.Context, cfg config, rep *report) error {
	n := cfg.Sessions * cfg.Members
	if err := checkCap(cfg, n); err != nil {
		return err
	}
	lfd, port, err := floorListen()
	if err != nil {
		return err
	}
	defer syscall.Close(lfd)

	exe, err := os.Executable()
	if err != nil {
		return err
	}
	child := exec.CommandContext(ctx, exe)
	child.Env = append(os.Environ(), fmt.Sprintf("%s=%d,%d", floorEnv, port, n))
	child.Stderr = os.Stderr
	toChild, err := child.StdinPipe()
	if err != nil {
		return err
	}
	fromChild, err := child.StdoutPipe()
	if err != nil {
		return err
	}
	if err := child.Start(); err != nil {
		return err
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()

	fds := make([]int, 0, n)
	defer func() {
		for _, fd := range fds {
			_ = syscall.Close(fd)
		}
	}()
	for len(fds) < n {
		fd, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return fmt.Errorf("floor: accept after %d connections: %w", len(fds), err)
		}
		_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		fds = append(fds, fd)
	}
	out := bufio.NewReader(fromChild)
	if line, err := out.ReadString('\n'); err != nil || line != "ready\n" {
		return fmt.Errorf("floor: receiver did not get ready: %q %v", line, err)
	}

	var stop atomic.Bool
	var sent, dropped atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		floorSend(fds, cfg.Tick, tickPhases(cfg.Tick), &stop, &sent, &dropped)
	}()
	defer func() { stop.Store(true); <-done }()

	select {
	case <-time.After(cfg.Warmup):
	case <-ctx.Done():
		return ctx.Err()
	}
	cpu := startCPU(nil)
	sent0, dropped0 := sent.Load(), dropped.Load()
	if _, err := io.WriteString(toChild, "start\n"); err != nil {
		return err
	}
	select {
	case <-time.After(cfg.Duration):
	case <-ctx.Done():
		return ctx.Err()
	}
	if _, err := io.WriteString(toChild, "stop\n"); err != nil {
		return err
	}
	use := cpu.stop()
	sentN, droppedN := sent.Load()-sent0, dropped.Load()-dropped0
	var res floorResult
	if err := json.NewDecoder(out).Decode(&res); err != nil {
		return fmt.Errorf("floor: receiver result: %w", err)
	}

	shape := fmt.Sprintf("%dx%d", cfg.Sessions, cfg.Members)
	wanted := float64(n) / cfg.Tick.Seconds()
	got := float64(res.Bytes/floorPacket) / res.Seconds
	wall := cfg.Duration.Seconds()
	lat := res.Latency
	r := rep.add(&row{Scenario: "floor", Target: "floor", Shape: shape, Metric: "packets", Count: int(res.Bytes / floorPacket), summary: lat})
	if lat.Count > 0 {
		r.P50, r.P95, r.P99, r.Max = ms(lat.P50), ms(lat.P95), ms(lat.P99), ms(lat.Max)
	}
	r.Delivery = ptr(got / wanted)
	perSent, perRecv := 0.0, 0.0
	if sentN > 0 {
		perSent = use.Bench * wall / float64(sentN) * 1e6
	}
	if got > 0 {
		perRecv = res.CPU / res.Seconds / got * 1e6
	}
	r.Note = fmt.Sprintf("%.0f packets/s of %.0f wanted (%d-byte writes, one per connection per %v); %d sends refused by full sockets; cpu: sender %.0f%% (%.1f us/packet), receiver %.0f%% (%.1f us/packet), softirq %.0f%%",
		got, wanted, floorPacket, cfg.Tick, droppedN, use.Bench*100, perSent, res.CPU/res.Seconds*100, perRecv, use.SoftIRQ*100)
	r.Extra = map[string]any{"packetsPerSecond": got, "wantedPerSecond": wanted, "sendsRefused": droppedN,
		"senderCPU": use.Bench, "receiverCPU": res.CPU / res.Seconds, "softirq": use.SoftIRQ}
	return nil
}

// tickPhases splits the tick into phases the way the server does, so the
// floor's writes are spread over the interval like the server's.
func tickPhases(tick time.Duration) int {
	return max(1, min(8, int(tick/(2*time.Millisecond))))
}

func floorListen() (fd, port int, err error) {
	fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, err
	}
	sa := &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if err = syscall.Bind(fd, sa); err == nil {
		err = syscall.Listen(fd, 4096)
	}
	if err == nil {
		var got syscall.Sockaddr
		if got, err = syscall.Getsockname(fd); err == nil {
			port = got.(*syscall.SockaddrInet4).Port
		}
	}
	if err != nil {
		_ = syscall.Close(fd)
		return -1, 0, err
	}
	return fd, port, nil
}

// floorSend writes one packet to every fd each tick, a phase's share of
// them at a time, on a locked thread with raw syscalls. Each packet
// carries the wall-clock time of its write (both processes read the same
// clock). A write the socket refuses is counted, not retried, as the
// server drops a tick for a connection that is behind.
func floorSend(fds []int, tick time.Duration, phases int, stop *atomic.Bool, sent, dropped *atomic.Int64) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var pkt [floorPacket]byte
	for i := range pkt {
		pkt[i] = 'x'
	}
	buf := uintptr(unsafe.Pointer(&pkt[0]))
	step := tick / time.Duration(phases)
	next := time.Now()
	for k := 0; !stop.Load(); k++ {
		ph := k % phases
		lo, hi := len(fds)*ph/phases, len(fds)*(ph+1)/phases
		var ok, refused int64
		for _, fd := range fds[lo:hi] {
			binary.LittleEndian.PutUint64(pkt[:8], uint64(time.Now().UnixNano()))
			n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), buf, floorPacket)
			if errno == 0 && n == floorPacket {
				ok++
			} else {
				refused++
			}
		}
		sent.Add(ok)
		dropped.Add(refused)
		next = next.Add(step)
		// A late wake-up is caught up on, so timer latency is not
		// mistaken for a lack of capacity; more than a tick behind, the
		// machine is saturated and the missed phases are skipped.
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		} else if -d > tick {
			next = time.Now()
		}
	}
}

// floorReceive is the child: it connects n sockets to the parent's port,
// says "ready", then reads everything that arrives with one epoll loop on
// a locked thread, counting bytes between "start" and "stop" on stdin.
func floorReceive(spec string, in io.Reader, out io.Writer) error {
	portS, nS, _ := strings.Cut(spec, ",")
	port, err1 := strconv.Atoi(portS)
	n, err2 := strconv.Atoi(nS)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("bad %s %q: %w", floorEnv, spec, err)
	}
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	sa := &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	// Indexed by descriptor: the child's descriptors are small and dense,
	// and a map lookup per read would be cost the floor does not have.
	var streams []floorStream
	for i := range n {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket %d: %w", i, err)
		}
		if err := syscall.Connect(fd, sa); err != nil {
			return fmt.Errorf("connect %d: %w", i, err)
		}
		if err := syscall.SetNonblock(fd, true); err != nil {
			return err
		}
		if fd >= len(streams) {
			streams = append(streams, make([]floorStream, fd+1-len(streams))...)
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return err
		}
	}
	if _, err := io.WriteString(out, "ready\n"); err != nil {
		return err
	}

	// 0 = before the window, 1 = in it, 2 = after it.
	var phase atomic.Int32
	go func() {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			switch sc.Text() {
			case "start":
				phase.Store(1)
			case "stop":
				phase.Store(2)
			}
		}
		phase.Store(2) // the parent is gone
	}()

	runtime.LockOSThread()
	events := make([]syscall.EpollEvent, 1024)
	buf := make([]byte, 64<<10)
	var total, startBytes int64
	var t0 time.Time
	var c0 time.Duration
	var lat benchclient.Samples
	for {
		ph := phase.Load()
		if ph > 0 && t0.IsZero() {
			t0, c0, startBytes = time.Now(), selfCPU(), total
		}
		if ph == 2 {
			res := floorResult{Bytes: total - startBytes, Seconds: time.Since(t0).Seconds(), CPU: (selfCPU() - c0).Seconds(), Latency: lat.Summarize()}
			return json.NewEncoder(out).Encode(res)
		}
		// Raw: the runtime's syscall bookkeeping and the thread handoffs
		// it starts when a call blocks would be the cost measured.
		r, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 20, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		var to *benchclient.Samples // latencies count only inside the window
		if ph == 1 {
			to = &lat
		}
		for i := range int(r) {
			fd := events[i].Fd
			r, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
			if errno == 0 && int(r) > 0 {
				total += int64(r)
				streams[fd].take(buf[:r], time.Now().UnixNano(), to)
			}
		}
	}
}

// floorStream cuts one connection's byte stream back into packets: a read
// may end inside a packet, or inside its stamp.
type floorStream struct {
	off   int // position in the current packet
	stamp [8]byte
}

// take consumes b, read at now (unix ns), and adds the latency of every
// packet whose stamp completes in it to to, when to is not nil.
func (st *floorStream) take(b []byte, now int64, to *benchclient.Samples) {
	for len(b) > 0 {
		if st.off < len(st.stamp) {
			k := copy(st.stamp[st.off:], b)
			st.off += k
			b = b[k:]
			if st.off == len(st.stamp) && to != nil {
				to.Add(time.Duration(now - int64(binary.LittleEndian.Uint64(st.stamp[:]))))
			}
			continue
		}
		k := min(floorPacket-st.off, len(b))
		st.off += k
		b = b[k:]
		if st.off == floorPacket {
			st.off = 0
		}
	}
}
