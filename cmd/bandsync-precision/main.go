// Command bandsync-precision measures how closely BandSync devices agree on
// the song's position through bad networks (docs/sync.md).
//
// It starts the server (-bin), and for each scenario three devices, each a
// Node.js process running the real SDK: a leader connected directly, "lan"
// through a clean proxy and "wifi" through a proxy with the scenario's
// delays, stall or link change (Toxiproxy, embedded). Each device reports
// its positionAt() for instants of the machine's clock, which is also the
// server's, so its error against the server's anchor is known exactly.
//
//	go run ./cmd/bandsync-precision -bin bin/bandsync                   # the full matrix, 60 s each
//	go run ./cmd/bandsync-precision -bin bin/bandsync -scenarios jitter,stall -duration 20s -check
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/bandsync/bandsync/internal/precision"
)

func main() { os.Exit(run()) }

// run is main without os.Exit, so that the deferred server stop runs.
func run() int {
	var (
		bin       = flag.String("bin", "", "server binary to start (required unless -url)")
		url       = flag.String("url", "", "an already running server instead of -bin")
		node      = flag.String("node", "node", "Node.js 20+ binary")
		device    = flag.String("device", "test/e2e/precision/device.mjs", "the device script")
		browser   = flag.Bool("wifi-browser", false, "run the wifi device in headless Chromium (browser-device.mjs beside -device) instead of Node")
		duration  = flag.Duration("duration", 60*time.Second, "song length scored per scenario")
		warmup    = flag.Duration("warmup", 10*time.Second, "time the devices sync before the leader plays")
		sample    = flag.Duration("sample", 50*time.Millisecond, "sampling period of each device")
		names     = flag.String("scenarios", "clean,jitter,asym,stall,change", "comma-separated scenarios")
		jsonOut   = flag.String("json", "", "write the results as JSON to this file")
		samples   = flag.String("samples", "", "write each device's samples (error over time) as CSV into this directory")
		check     = flag.Bool("check", false, "exit 1 when an acceptance target (docs/sync.md) is missed")
		seed      = flag.Uint64("seed", 1, "seed of the delay draws")
		verbosity = flag.String("log", "info", "log level: debug, info, warn")
	)
	flag.Parse()
	var level slog.Level
	if err := level.UnmarshalText([]byte(*verbosity)); err != nil {
		fatalf("-log: %v", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	all := precision.Scenarios(*duration)
	var run []precision.Scenario
	for _, n := range strings.Split(*names, ",") {
		i := slices.IndexFunc(all, func(s precision.Scenario) bool { return s.Name == strings.TrimSpace(n) })
		if i < 0 {
			fatalf("unknown scenario %q (have clean, jitter, asym, stall, change)", n)
		}
		run = append(run, all[i])
	}
	if *duration < 5*time.Second || *sample < 5*time.Millisecond {
		fatalf("-duration must be at least 5s and -sample at least 5ms")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	serverURL := *url
	if serverURL == "" {
		if *bin == "" {
			fatalf("give -bin (a server binary to start) or -url")
		}
		u, stopServer, err := startServer(ctx, *bin, log)
		if err != nil {
			fatalf("%v", err)
		}
		defer stopServer()
		serverURL = u
	}

	wifiScript := ""
	if *browser {
		wifiScript = filepath.Join(filepath.Dir(*device), "browser-device.mjs")
	}
	cfg := precision.Config{
		Node: *node, DeviceScript: *device, ServerURL: serverURL, Duration: *duration,
		Warmup: *warmup, WifiScript: wifiScript, SampleMs: float64(sample.Milliseconds()), Seed: *seed, SamplesDir: *samples, Log: log,
	}
	var results []precision.Result
	failed := false
	for _, sc := range run {
		log.Info("scenario", "name", sc.Name, "desc", sc.Desc, "duration", *duration)
		r, err := precision.RunScenario(ctx, cfg, sc)
		if err != nil {
			log.Error("scenario failed to run", "name", sc.Name, "err", err)
			failed = true
			continue
		}
		results = append(results, r)
	}
	host, _ := os.Hostname()
	fmt.Printf("\n%d s of play per scenario, %d ms sampling, on %s (%d CPUs), %s\n\n", int(duration.Seconds()), sample.Milliseconds(), host, runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339))
	printTable(os.Stdout, results)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			log.Error("write json", "err", err)
		}
	}
	if *check {
		misses := precision.Check(results)
		for _, m := range misses {
			fmt.Println("MISSED:", m)
		}
		if len(misses) > 0 {
			failed = true
		} else {
			fmt.Println("every acceptance target met")
		}
	}
	if failed {
		return 1
	}
	return 0
}

func printTable(w io.Writer, rs []precision.Result) {
	f := func(v float64) string {
		if math.IsNaN(v) {
			return "-"
		}
		return fmt.Sprintf("%.2f", v)
	}
	fmt.Fprintln(w, "| scenario | device | n | p50 | p99 | max | p99 first/last third | max jump | recovery | errorMs p50 | covered |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		for _, d := range r.Devices {
			rec := make([]string, len(d.Recovery))
			for i, x := range d.Recovery {
				rec[i] = fmt.Sprintf("%.1f s", x/1000)
			}
			fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s / %s | %s | %s | %s | %.0f%% |\n", r.Scenario, d.Name, d.N,
				f(d.P50), f(d.P99), f(d.Max), f(d.FirstP99), f(d.LastP99), f(d.MaxJump), strings.Join(rec, ", "), f(d.ErrEst), 100*d.Covered)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | pair | n | p50 | p99 | max |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, r := range rs {
		for _, p := range r.Pairs {
			fmt.Fprintf(w, "| %s | %s-%s | %d | %s | %s | %s |\n", r.Scenario, p.A, p.B, p.N, f(p.P50), f(p.P99), f(p.Max))
		}
	}
}

// startServer runs the server binary on a free loopback port, in an empty
// directory (no stray .env), and waits for /health.
func startServer(ctx context.Context, bin string, log *slog.Logger) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	dir, err := os.MkdirTemp("", "bandsync-precision-")
	if err != nil {
		return "", nil, err
	}
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = dir
	env := []string{}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "REDIS_") && k != "PORT" && k != "HOST" && k != "LOG_LEVEL" {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, fmt.Sprintf("PORT=%d", port), "HOST=127.0.0.1", "LOG_LEVEL=warn")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start %s: %w", bin, err)
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = os.RemoveAll(dir)
	}
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(u + "/health")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				log.Info("server up", "url", u)
				return u, stop, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	return "", nil, fmt.Errorf("server %s: no healthy /health within 15 s", bin)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bandsync-precision: "+format+"\n", args...)
	os.Exit(2)
}
