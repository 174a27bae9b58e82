package precision

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sink accepts one connection and reports each line with its arrival time.
func sink(t *testing.T) (addr string, lines <-chan [2]string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	ch := make(chan [2]string, 1024)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer func() { _ = c.Close() }()
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			ch <- [2]string{sc.Text(), strconv.FormatInt(time.Now().UnixMicro(), 10)}
		}
		close(ch)
	}()
	return l.Addr().String(), ch
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Every line written through a jittery link arrives, in order, later than
// it was sent; a stall holds them all until it ends.
func TestLinkDelaysInOrderAndStalls(t *testing.T) {
	addr, lines := sink(t)
	n := NewNetwork(7)
	link, err := n.Link("t", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	if err := link.SetDelay(Dist{MeanMs: 30, StddevMs: 20}, Dist{}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, link.Addr())
	const count = 40
	sent := make([]int64, count)
	for i := range count {
		sent[i] = time.Now().UnixMicro()
		if _, err := fmt.Fprintf(c, "%d\n", i); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Millisecond) // separate chunks, each with its own draw
	}
	var delays []float64
	for i := range count {
		got := <-lines
		if got[0] != strconv.Itoa(i) {
			t.Fatalf("line %d arrived as %q: out of order or corrupted", i, got[0])
		}
		at, _ := strconv.ParseInt(got[1], 10, 64)
		delays = append(delays, float64(at-sent[i])/1000)
	}
	if p50 := Percentile(delays, 50); p50 < 10 {
		t.Errorf("median delay %.1f ms through N(30,20): the toxic is not delaying", p50)
	}

	// A stall holds everything until it ends, then releases it in order.
	if err := link.SetDelay(Dist{}, Dist{}); err != nil {
		t.Fatal(err)
	}
	if err := link.Stall(true); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := io.WriteString(c, "s"+strconv.Itoa(i)+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case got := <-lines:
		t.Fatalf("%q went through a stalled link", got[0])
	case <-time.After(200 * time.Millisecond):
	}
	if err := link.Stall(false); err != nil {
		t.Fatal(err)
	}
	var after []string
	for range 5 {
		after = append(after, (<-lines)[0])
	}
	if strings.Join(after, ",") != "s0,s1,s2,s3,s4" {
		t.Errorf("after the stall: %v", after)
	}
}
