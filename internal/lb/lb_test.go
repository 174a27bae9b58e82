package lb

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// instance is a fake BandSync instance: /readyz per its flag, anything else
// answers with its name.
func instance(t *testing.T, name string, ready *atomic.Bool) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			if !ready.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		if r.Header.Get("Upgrade") == "websocket" {
			conn, rw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" + name + "\n")
			rw.Flush()
			line, _ := rw.ReadString('\n')
			rw.WriteString("echo " + line)
			rw.Flush()
			return
		}
		io.WriteString(w, name)
	}))
	t.Cleanup(s.Close)
	return s
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Status[:3] + " " + string(b)
}

func balancer(t *testing.T, backends ...*httptest.Server) (*Balancer, *httptest.Server) {
	t.Helper()
	var urls []*url.URL
	for _, s := range backends {
		u, _ := url.Parse(s.URL)
		urls = append(urls, u)
	}
	b, err := New(Options{Backends: urls, CheckInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(b)
	t.Cleanup(front.Close)
	return b, front
}

func TestRoundRobinSkipsUnreadyAndDeadBackends(t *testing.T) {
	var aReady, bReady, cReady atomic.Bool
	aReady.Store(true)
	bReady.Store(true)
	cReady.Store(true)
	a, bs, c := instance(t, "a", &aReady), instance(t, "b", &bReady), instance(t, "c", &cReady)
	lb, front := balancer(t, a, bs, c)

	seen := map[string]int{}
	for range 6 {
		seen[get(t, front.URL+"/health")]++
	}
	if seen["200 a"] != 2 || seen["200 b"] != 2 || seen["200 c"] != 2 {
		t.Fatalf("6 requests over 3 ready backends went %v, want 2 each", seen)
	}

	// b drains: once a check has seen it, it gets nothing new.
	bReady.Store(false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go lb.Run(ctx)
	waitFor(t, func() bool { return lb.Ready() == 2 })
	// c dies without a check noticing yet: its requests go to the next one.
	c.Close()
	for i := range 10 {
		if got := get(t, front.URL+"/x"); got != "200 a" {
			t.Fatalf("request %d = %q, want every request on a (b draining, c dead)", i, got)
		}
	}
}

func TestNoReadyBackendIs503(t *testing.T) {
	var ready atomic.Bool
	lb, front := balancer(t, instance(t, "a", &ready))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go lb.Run(ctx)
	waitFor(t, func() bool { return lb.Ready() == 0 })
	if got := get(t, front.URL+"/"); !strings.HasPrefix(got, "503") {
		t.Fatalf("with no ready backend: %q, want 503", got)
	}
}

func TestWebSocketUpgradePassesThrough(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	_, front := balancer(t, instance(t, "a", &ready))
	u, _ := url.Parse(front.URL)
	req, _ := http.NewRequest("GET", front.URL+"/socket.io/?EIO=4&transport=websocket", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, req)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade through the balancer: %v %v, want 101", resp, err)
	}
	if line, _ := r.ReadString('\n'); line != "a\n" {
		t.Fatalf("first line after the upgrade = %q", line)
	}
	io.WriteString(conn, "ping\n")
	if line, _ := r.ReadString('\n'); line != "echo ping\n" {
		t.Fatalf("the upgraded connection is not two-way: got %q", line)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
