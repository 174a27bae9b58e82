//go:build linux

package netfault

import (
	"context"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startRedis runs a throw-away redis-server on h, port 6379 (the host is
// private, so the port is free), and waits until the test reaches it.
func startRedis(t testing.TB, l *Lab, h *Host) string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		SkipOrFail(t, "redis-server not found (apt-get install redis-server)")
	}
	cmd := h.Command("redis-server", "--bind", "0.0.0.0", "--port", "6379", "--protected-mode", "no",
		"--save", "", "--appendonly", "no", "--loglevel", "warning")
	if err := l.Start(cmd); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(h.IP, "6379")
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s: %v", h.Name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ping asks the redis-server at addr for PONG from host from, within 1 s.
func ping(from *Host, addr string) bool {
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", from.NS, "redis-cli", "-h", host, "-p", port, "PING").Output()
	return err == nil && strings.TrimSpace(string(out)) == "PONG"
}

func dial(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err == nil {
		c.Close()
	}
	return err
}

// The faults the scenarios rely on are real: a partition stops traffic
// between two hosts and only them, loss drops about the share asked for,
// a link set down cuts the host off until it is up again, and nothing of
// the lab is left afterwards.
func TestLabFaults(t *testing.T) {
	var ns, uplink string
	t.Run("faults", func(t *testing.T) {
		l := New(t)
		ns, uplink = l.ns, l.uplink
		a, b, c := l.Host("a"), l.Host("b"), l.Host("c")
		addr := startRedis(t, l, b)
		if !ping(a, addr) || !ping(c, addr) {
			t.Fatal("hosts a and c cannot reach b before any fault")
		}

		heal := a.Partition(b)
		if ping(a, addr) {
			t.Error("a still reaches b through the partition")
		}
		if !ping(c, addr) {
			t.Error("the partition between a and b cut c off too")
		}
		if err := heal(); err != nil {
			t.Fatal(err)
		}
		if !ping(a, addr) {
			t.Error("a does not reach b after healing")
		}

		// 5000 datagrams from the test's namespace into b, 2% loss on b:
		// the DROP rule's counter says how many it took (binomial: mean
		// 100, sd 10).
		b.Loss(0.02)
		u, err := net.Dial("udp", net.JoinHostPort(b.IP, "9"))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 5000; i++ {
			_, _ = u.Write([]byte("x"))
		}
		u.Close()
		out, err := b.Counters()
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^\s*(\d+)\s+\d+\s+DROP\s.*statistic`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no loss rule in b's iptables:\n%s", out)
		}
		// The PONGs before and TCP replies add a handful of packets.
		if n, _ := strconv.Atoi(m[1]); n < 60 || n > 160 {
			t.Errorf("2%% loss dropped %d of ~5000 packets, want about 100", n)
		}
		b.Loss(0)
		if !ping(a, addr) {
			t.Error("a does not reach b after the loss is removed")
		}

		b.LinkDown(true)
		if err := dial(addr); err == nil {
			t.Error("b's redis is reachable with b's link down")
		}
		b.LinkDown(false)
		deadline := time.Now().Add(5 * time.Second)
		for dial(addr) != nil {
			if time.Now().After(deadline) {
				t.Fatal("b unreachable 5 s after its link is up again")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if ns != "" && strings.Contains(string(out), ns) {
		t.Errorf("namespaces left after the lab:\n%s", out)
	}
	if uplink != "" && exec.Command("ip", "link", "show", uplink).Run() == nil {
		t.Errorf("uplink %s left after the lab", uplink)
	}
}
