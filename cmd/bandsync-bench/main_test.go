package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/benchclient"
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
	if d := newDialer("ws://x", nil, 1000, false); len(d.sources) != 0 {
		t.Errorf("small run got source addresses %v", d.sources)
	}
	d := newDialer("ws://x", nil, 60000, false)
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
	d := newDialer("ws"+strings.TrimPrefix(srv.URL, "http")+"/socket.io/", []net.IP{net.IPv4(127, 0, 0, 2), net.IPv4(127, 0, 0, 3)}, 4, false)
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

// With several -url, member i of session j connects to instance (i+j)
// mod N. Two counting TCP forwarders in front of one relay stand for two
// instances on a shared store: every seek must still arrive, and 3
// sessions of 3 split 5/4 (each session 2/1, its leader's instance
// taking two, leaders alternating); "member i on instance i mod N" alone
// would split 6/3. -single then measures the shape on the first one.
func TestSeveralInstancesSpreadEverySession(t *testing.T) {
	r, err := benchclient.ListenRelay("127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	upstream := strings.TrimPrefix(r.URL(), "http://")
	var urls []string
	var counts [2]atomic.Int64
	for i := range counts {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go forward(ln, upstream, &counts[i])
		urls = append(urls, "http://"+ln.Addr().String())
	}
	cfg, err := parseFlags([]string{"-scenario", "fanout", "-url", strings.Join(urls, ","), "-single",
		"-sessions", "3", "-members", "3", "-client-tick-ms", "0",
		"-duration", "1s", "-interval", "250ms", "-warmup", "100ms"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]*row{}
	for _, r := range rep.Rows {
		rows[r.Target+"/"+r.Metric] = r
	}
	// 1 s at one seek per 250 ms: 4 seeks per session, 2 followers each.
	for _, name := range []string{"1 instance", "2 instances"} {
		s := rows[name+"/seek latency"]
		if s == nil || s.Count != 24 || *s.Missing != 0 {
			t.Errorf("%s: seek row %+v; want 24 receipts, 0 missing", name, s)
		}
		if tl := rows[name+"/tick lag"]; tl == nil || tl.Count != 0 || !strings.Contains(tl.Note, "no ticks asked for") {
			t.Errorf("%s: tick row without ticks asked for: %+v", name, tl)
		}
	}
	// The spread run put 5 and 4; the single run 9 on the first.
	if a, b := counts[0].Load(), counts[1].Load(); a != 5+9 || b != 4 {
		t.Errorf("connections per instance %d, %d; want 14 (5 spread + 9 single) and 4", a, b)
	}
}

// forward relays every connection accepted on ln to upstream, counting them.
func forward(ln net.Listener, upstream string, n *atomic.Int64) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		n.Add(1)
		go func() {
			defer c.Close()
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				return
			}
			defer u.Close()
			go func() { _, _ = io.Copy(u, c); _ = u.Close() }()
			_, _ = io.Copy(c, u)
		}()
	}
}

func TestSeveralURLsOnlyWhereTheyMeanSomething(t *testing.T) {
	if _, err := parseFlags([]string{"-scenario", "idle", "-url", "http://127.0.0.1:1,http://127.0.0.1:2"}); err == nil {
		t.Error("idle accepted several -url")
	}
	if _, err := parseFlags([]string{"-scenario", "fanout", "-single"}); err == nil {
		t.Error("-single accepted with one -url")
	}
	if _, err := parseFlags([]string{"-url", "http://127.0.0.1:1,http://10.0.0.1:2"}); err == nil {
		t.Error("a non-loopback second -url was accepted")
	}
}

// A seek-latency ramp against the relay, which delivers every seek: every
// step must count every seek, the later steps too (their seeks continue
// the earlier steps' sequence), and so find no knee.
func TestRampBySeekLatencyCountsEveryStep(t *testing.T) {
	r, err := benchclient.ListenRelay("127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cfg, err := parseFlags([]string{"-scenario", "ramp", "-url", r.URL(), "-members", "3", "-client-tick-ms", "0",
		"-ramp-start", "2", "-ramp-step", "2", "-ramp-max", "4", "-step-duration", "1s", "-interval", "250ms",
		"-warmup", "100ms", "-ramp-seek-p99", "10s"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 2 {
		t.Fatalf("want one row per step, got %+v", rep.Rows)
	}
	for i, row := range rep.Rows {
		if row.Metric != "seek latency" || row.Count == 0 || row.Missing == nil || *row.Missing != 0 {
			t.Errorf("step %d: %s count %d missing %v; want every seek received", i+1, row.Metric, row.Count, row.Missing)
		}
	}
	if !strings.HasPrefix(rep.Knee, "not reached") {
		t.Errorf("knee = %q; the relay should pass every step", rep.Knee)
	}
}
