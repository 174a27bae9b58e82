package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the floor scenario's receiver,
// which the scenario starts by re-executing its own binary.
func TestMain(m *testing.M) {
	if runFloorReceiverIfChild() {
		return
	}
	os.Exit(m.Run())
}

// A floor run small enough for any machine must deliver every packet it
// sends and count them.
func TestFloorDeliversASmallShape(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the floor scenario uses Linux system calls")
	}
	cfg, err := parseFlags([]string{"-scenario", "floor", "-sessions", "5", "-members", "4",
		"-duration", "1s", "-warmup", "200ms"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 1 || rep.Rows[0].Delivery == nil {
		t.Fatalf("rows = %+v", rep.Rows)
	}
	r := rep.Rows[0]
	// 20 connections x 62.5 ticks/s x 1 s = 1,250 packets. The window's
	// edges may cut one tick per connection either way, and on a machine
	// busy with other tests the sender may skip a stalled tick or two;
	// a broken count (nothing, double, the wrong unit) is far outside.
	if r.Count < 1000 || r.Count > 1300 || *r.Delivery < 0.8 || *r.Delivery > 1.04 {
		t.Errorf("floor delivered %d packets (%.1f%%); want about 1,250", r.Count, *r.Delivery*100)
	}
	if !strings.Contains(r.Note, "1250 packets/s wanted") && !strings.Contains(r.Note, "of 1250 wanted") {
		t.Errorf("note lacks the wanted rate: %s", r.Note)
	}
	// Every packet counted has a latency, from the stamp it carries; a
	// stream cut at the wrong places reads garbage stamps (negative, or
	// years) instead.
	lat := r.summary
	if lat.Count < r.Count-20 || lat.Count > r.Count+20 {
		t.Errorf("%d latencies for %d packets", lat.Count, r.Count)
	}
	if lat.P50 <= 0 || lat.Max > 10*time.Second || r.P99 == nil {
		t.Errorf("floor latency p50 %v, max %v, p99 column %v: not a send-to-receipt time", lat.P50, lat.Max, r.P99)
	}
}

// The fanout code, run small against the in-process relay, must see every
// follower receive every seek and the relay's ticks arrive.
func TestFanoutAgainstRelay(t *testing.T) {
	for _, readers := range []string{"epoll", "goroutine"} {
		t.Run(readers, func(t *testing.T) { testFanoutAgainstRelay(t, readers) })
	}
}

func testFanoutAgainstRelay(t *testing.T, readers string) {
	cfg, err := parseFlags([]string{"-scenario", "relay", "-sessions", "2", "-members", "3",
		"-duration", "1s", "-interval", "250ms", "-warmup", "100ms", "-readers", readers})
	if err != nil {
		t.Fatal(err)
	}
	defer parseFlags(nil) // back to the default readers
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	byMetric := map[string]*row{}
	for _, r := range rep.Rows {
		byMetric[r.Metric] = r
	}
	seek := byMetric["seek latency"]
	if seek == nil {
		t.Fatalf("no seek latency row in %+v", rep.Rows)
	}
	// 1 s at one seek per 250 ms per session: 4 seeks x 2 sessions x 2
	// followers.
	if seek.Count != 16 || seek.Missing == nil || *seek.Missing != 0 {
		t.Errorf("seek receipts = %d, missing %v; want 16 and 0", seek.Count, seek.Missing)
	}
	if seek.P99 == nil || *seek.P99 <= 0 {
		t.Errorf("seek p99 = %v", seek.P99)
	}
	ticks := byMetric["tick lag"]
	if ticks == nil || ticks.Count == 0 || ticks.Delivery == nil || *ticks.Delivery <= 0 {
		t.Errorf("relay ticks not received: %+v", ticks)
	}

	var table bytes.Buffer
	rep.writeTable(&table)
	if !strings.Contains(table.String(), "seek latency") || !strings.Contains(table.String(), "2x3") {
		t.Errorf("table lacks the run:\n%s", table.String())
	}
	var js bytes.Buffer
	if err := rep.writeJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Results []struct {
			Scenario string   `json:"scenario"`
			Metric   string   `json:"metric"`
			P99      *float64 `json:"p99Ms"`
		} `json:"results"`
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Results) != len(rep.Rows) || back.Results[0].P99 == nil {
		t.Errorf("JSON output does not read back: %v\n%s", err, js.String())
	}
}

func TestRemoteTargetsAreRefused(t *testing.T) {
	if _, err := parseFlags([]string{"-url", "http://10.1.2.3:3001"}); err == nil || !strings.Contains(err.Error(), "-allow-remote") {
		t.Errorf("non-loopback URL accepted: %v", err)
	}
	if _, err := parseFlags([]string{"-url", "http://10.1.2.3:3001", "-allow-remote"}); err != nil {
		t.Errorf("-allow-remote refused: %v", err)
	}
	for _, ok := range []string{"http://127.0.0.1:3001", "http://localhost:3001", "http://[::1]:3001", "http://127.9.9.9:1"} {
		if _, err := parseFlags([]string{"-url", ok}); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	if _, err := parseFlags([]string{"-source-ips", "127.0.0.2,192.168.1.1"}); err == nil {
		t.Error("non-loopback source address accepted")
	}
}

func TestConnectionCapIsEnforced(t *testing.T) {
	cfg, err := parseFlags([]string{"-scenario", "fanout", "-sessions", "100", "-members", "10", "-max-conns", "500"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "cap") {
		t.Errorf("1,000 connections ran under a cap of 500: %v", err)
	}
}

func TestSourceAddressesAreAddedWhenNeeded(t *testing.T) {
	if d := newDialer("ws://x", nil, 1000); len(d.sources) != 0 {
		t.Errorf("small run got source addresses %v", d.sources)
	}
	d := newDialer("ws://x", nil, 60000)
	if len(d.sources) != 3 || d.sources[2].String() != "127.0.0.3" {
		t.Errorf("60,000 connections got sources %v; want 127.0.0.1-3", d.sources)
	}
}

// Connections given source addresses really leave from them, round-robin,
// which is what lets a run go past one address's ephemeral ports.
func TestDialsLeaveFromTheGivenSourceAddresses(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("127.0.0.2 and up are loopback only on Linux")
	}
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		mu.Lock()
		seen[host]++
		mu.Unlock()
		http.Error(w, "no upgrade here", http.StatusTeapot)
	}))
	defer srv.Close()
	d := newDialer("ws"+strings.TrimPrefix(srv.URL, "http")+"/socket.io/", []net.IP{net.IPv4(127, 0, 0, 2), net.IPv4(127, 0, 0, 3)}, 4)
	for range 4 {
		if _, err := d.dial(); err == nil {
			t.Fatal("dial succeeded against a server that refuses upgrades")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["127.0.0.2"] != 2 || seen["127.0.0.3"] != 2 || len(seen) != 2 {
		t.Errorf("connections came from %v; want two each from 127.0.0.2 and 127.0.0.3", seen)
	}
}
