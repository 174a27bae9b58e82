package main

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bandsync/bandsync/internal/benchclient"
)

// perSourceConns is how many connections one source address is given
// before another is added automatically: the kernel hands out about 28,000
// ephemeral ports (32768-60999) per source address and destination, and
// some must stay free for TIME_WAIT and the rest of the machine.
const perSourceConns = 25000

// dialTimeout bounds one connection's dial, upgrade and CONNECT.
const dialTimeout = 10 * time.Second

// dialer opens benchmark connections, spreading them over source
// addresses round-robin.
type dialer struct {
	url     string
	sources []net.IP
	next    atomic.Uint64
	// goroutineReaders: -readers goroutine, a reading goroutine per connection.
	goroutineReaders bool
}

// newDialer prepares to open up to total connections to wsURL. Explicit
// sources win; otherwise 127.0.0.1, 127.0.0.2, ... are used only when
// total needs more than one address, so small runs behave like any
// client (the kernel picks the source).
func newDialer(wsURL string, sources []net.IP, total int, goroutineReaders bool) *dialer {
	d := &dialer{url: wsURL, sources: sources, goroutineReaders: goroutineReaders}
	if len(sources) == 0 && total > perSourceConns {
		k := (total + perSourceConns - 1) / perSourceConns
		for i := 1; i <= k; i++ {
			d.sources = append(d.sources, net.IPv4(127, 0, 0, byte(i)))
		}
	}
	return d
}

func (d *dialer) dial() (*benchclient.Conn, error) {
	var local net.IP
	if len(d.sources) > 0 {
		local = d.sources[d.next.Add(1)%uint64(len(d.sources))]
	}
	c, err := benchclient.Dial(d.url, benchclient.DialOptions{Local: local, Timeout: dialTimeout, GoroutineReader: d.goroutineReaders})
	if errors.Is(err, syscall.EADDRNOTAVAIL) {
		err = fmt.Errorf("%w (out of ephemeral ports for this source address: pass more with -source-ips 127.0.0.2,127.0.0.3,... or wait for TIME_WAIT to expire; `ss -s` shows them)", err)
	}
	return c, err
}
