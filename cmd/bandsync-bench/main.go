// Command bandsync-bench loads a server that speaks the BandSync wire
// contract (the Go server or the Node original) from one process and
// reports latency percentiles, tick delivery and memory per connection.
//
// It talks raw Engine.IO/Socket.IO over WebSocket (internal/benchclient)
// so that it costs less than the server it measures, and it can measure a
// minimal in-process relay with the same code to give every fan-out figure
// a floor to be read against. Every run is bounded in connections and
// time, and it refuses non-loopback targets unless told otherwise.
//
// Given several instance URLs (-url a,b,c) it spreads every session's
// members across them, so a seek crosses instances through the shared
// store, as it does behind a load balancer.
//
// Usage: bandsync-bench -scenario fanout -sessions 50 -members 8 -baseline
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/bandsync/bandsync/internal/benchclient"
)

// config is everything the flags set.
type config struct {
	URL         string
	Scenario    string
	Sessions    int
	Members     int
	N           int
	Concurrency int
	Interval    time.Duration // fanout: leader seek period
	SeekEvery   time.Duration // ticks: leader seek period
	Tick        time.Duration
	Duration    time.Duration
	Warmup      time.Duration
	Timeout     time.Duration
	MaxConns    int
	AllowRemote bool
	SourceIPs   []net.IP
	ServerPID   int   // the first of ServerPIDs: memory is read from it
	ServerPIDs  []int // CPU is the sum over these
	Baseline    bool
	JSON        bool
	CPUProfile  string
	Readers     string

	RampStart, RampStep, RampMax int
	StepDuration                 time.Duration
	RampSeekP99                  time.Duration // ramp: also a seek-latency knee

	// Several instances (-url a,b,c).
	URLs   []string
	Single bool // also measure the shape with every member on URLs[0]

	// ClientTick is the tickIntervalMs followers ask for in join_session
	// (docs/protocol.md "Ticks on demand"): -1 asks nothing (every tick).
	ClientTick int

	// A slow Redis behind the server (redisfault.go).
	RedisProxy, RedisUpstream                  string
	RedisDelay, RedisDelayAfter, RedisDelayFor time.Duration

	wsURL  string      // derived: the first of wsURLs
	wsURLs []string    // derived, one per URLs
	redis  *redisFault // started from RedisProxy
}

func main() {
	if runFloorReceiverIfChild() {
		return
	}
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "bandsync-bench:", err)
		os.Exit(2)
	}
	// The hard deadline: whatever happens, the run ends.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	go func() {
		<-ctx.Done()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			time.Sleep(5 * time.Second) // let the scenario report the cancellation itself
			fmt.Fprintln(os.Stderr, "bandsync-bench: -timeout reached, exiting")
			os.Exit(3)
		}
	}()
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bandsync-bench: -cpuprofile:", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	if cfg.RedisProxy != "" {
		if cfg.redis, err = startRedisFault(ctx, cfg); err != nil {
			fmt.Fprintln(os.Stderr, "bandsync-bench:", err)
			os.Exit(1)
		}
		defer cfg.redis.close()
	}
	rep, err := run(ctx, cfg)
	if rep != nil {
		if cfg.JSON {
			err = errors.Join(err, rep.writeJSON(os.Stdout))
		} else {
			rep.writeTable(os.Stdout)
		}
	}
	if err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bandsync-bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	var c config
	var sources, pids string
	fs := flag.NewFlagSet("bandsync-bench", flag.ContinueOnError)
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:3001", "server base URL (the Socket.IO path /socket.io/ is appended); several instances comma-separated: member i of session j connects to instance (i+j) mod N")
	fs.BoolVar(&c.Single, "single", false, "fanout, ticks with several -url: also measure the same shape with every member on the first instance, right after the spread run")
	fs.IntVar(&c.ClientTick, "client-tick-ms", -1, "fanout, ticks, ramp: the tickIntervalMs every member asks for in join_session: -1 asks nothing (every tick), 0 no ticks, N at most one per N ms")
	fs.DurationVar(&c.RampSeekP99, "ramp-seek-p99", 0, "ramp: leaders also seek every -interval, and a step past this seek p99 (or missing a seek) is past the knee; 0: ticks only")
	fs.StringVar(&c.Scenario, "scenario", "fanout", "connect | join | fanout | ticks | idle | ramp | relay | floor")
	fs.IntVar(&c.Sessions, "sessions", 50, "sessions (fanout, ticks, relay)")
	fs.IntVar(&c.Members, "members", 8, "members per session, leader included (fanout, ticks, idle, ramp, relay)")
	fs.IntVar(&c.N, "n", 1000, "connections (connect, idle) or join round trips (join)")
	fs.IntVar(&c.Concurrency, "concurrency", 1, "connect: dials in flight (1 = sequential)")
	fs.DurationVar(&c.Interval, "interval", 250*time.Millisecond, "fanout/relay: each leader seeks this often")
	fs.DurationVar(&c.SeekEvery, "seek-interval", time.Second, "ticks: each leader seeks this often (0 = never), to catch stale ticks")
	fs.DurationVar(&c.Tick, "tick-interval", 16*time.Millisecond, "the server's SCROLL_TICK_INTERVAL; the expected tick period")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measurement window (idle: how long connections are held)")
	fs.DurationVar(&c.Warmup, "warmup", time.Second, "time between the last play and the start of measurement")
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Minute, "hard limit on the whole run")
	fs.IntVar(&c.MaxConns, "max-conns", 19000, "hard cap on client connections (also capped by the open-file limit)")
	fs.BoolVar(&c.AllowRemote, "allow-remote", false, "allow a non-loopback -url")
	fs.StringVar(&sources, "source-ips", "", "comma-separated 127.x.y.z source addresses to spread connections over (default: automatic when needed)")
	fs.StringVar(&pids, "server-pid", "", "server process id: RSS and CPU are read from /proc/<pid> (idle: otherwise GET /metrics); several instances comma-separated: CPU is their sum")
	fs.BoolVar(&c.Baseline, "baseline", false, "fanout, ticks: measure the in-process relay with the same shape right before and after the server, and report p99 ratios")
	fs.BoolVar(&c.JSON, "json", false, "print results as JSON instead of a table")
	fs.StringVar(&c.Readers, "readers", "epoll", "how the bench reads its connections: epoll (shared loops, Linux) or goroutine (one per connection)")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write the bench's own CPU profile to this file (to check it is not the bottleneck)")
	fs.IntVar(&c.RampStart, "ramp-start", 100, "ramp: playing sessions in the first step")
	fs.IntVar(&c.RampStep, "ramp-step", 100, "ramp: sessions added per step")
	fs.IntVar(&c.RampMax, "ramp-max", 2000, "ramp: stop after this many sessions even without a knee")
	fs.DurationVar(&c.StepDuration, "step-duration", 3*time.Second, "ramp: measurement window per step")
	fs.StringVar(&c.RedisProxy, "redis-proxy", "", "fanout, ticks: listen here (host:port) with a fault proxy in front of -redis-upstream; start the server with REDIS_URL pointing here")
	fs.StringVar(&c.RedisUpstream, "redis-upstream", "127.0.0.1:6379", "the Redis the -redis-proxy forwards to")
	fs.DurationVar(&c.RedisDelay, "redis-delay", 250*time.Millisecond, "with -redis-proxy: how late Redis's replies arrive during the fault (0: no fault, the undisturbed run through the proxy)")
	fs.DurationVar(&c.RedisDelayAfter, "redis-delay-after", 3*time.Second, "with -redis-proxy: when the fault starts, from the start of the measurement window")
	fs.DurationVar(&c.RedisDelayFor, "redis-delay-for", 4*time.Second, "with -redis-proxy: how long the fault lasts")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch c.Scenario {
	case "connect", "join", "fanout", "ticks", "idle", "ramp", "relay", "floor":
	default:
		return c, fmt.Errorf("unknown -scenario %q", c.Scenario)
	}
	for _, v := range []struct {
		name string
		val  int
		min  int
	}{{"sessions", c.Sessions, 1}, {"members", c.Members, 1}, {"n", c.N, 1}, {"concurrency", c.Concurrency, 1},
		{"max-conns", c.MaxConns, 1}, {"ramp-start", c.RampStart, 1}, {"ramp-step", c.RampStep, 1}, {"ramp-max", c.RampMax, 1}} {
		if v.val < v.min {
			return c, fmt.Errorf("-%s must be at least %d", v.name, v.min)
		}
	}
	switch c.Scenario {
	case "fanout", "ticks", "ramp", "relay":
		if c.Members < 2 {
			return c, errors.New("-members must be at least 2: latency is measured at followers")
		}
	}
	if c.ClientTick < -1 || c.ClientTick > 60000 {
		return c, errors.New("-client-tick-ms must be -1 (ask nothing), 0 (no ticks) or up to 60000")
	}
	if c.RampSeekP99 < 0 {
		return c, errors.New("-ramp-seek-p99 must not be negative")
	}
	if c.Interval <= 0 || c.Tick <= 0 || c.Duration <= 0 || c.StepDuration <= 0 || c.Timeout <= 0 || c.SeekEvery < 0 || c.Warmup < 0 {
		return c, errors.New("durations must be positive")
	}
	switch c.Readers {
	case "epoll", "goroutine":
	default:
		return c, fmt.Errorf("-readers must be epoll or goroutine, not %q", c.Readers)
	}
	if c.RedisProxy != "" {
		if c.Scenario != "fanout" && c.Scenario != "ticks" {
			return c, errors.New("-redis-proxy goes with -scenario fanout or ticks")
		}
		if err := checkLoopback("redis://"+c.RedisProxy, false); err != nil {
			return c, err
		}
		if err := checkLoopback("redis://"+c.RedisUpstream, false); err != nil {
			return c, err
		}
		if c.RedisDelay < 0 || c.RedisDelayAfter < 0 || c.RedisDelayFor <= 0 || c.RedisDelayAfter+c.RedisDelayFor > c.Duration {
			return c, errors.New("-redis-delay must be >= 0 and -redis-delay-for positive, and the fault must end inside -duration")
		}
	}
	var err error
	if c.SourceIPs, err = parseSources(sources); err != nil {
		return c, err
	}
	if c.ServerPIDs, err = parsePIDs(pids); err != nil {
		return c, err
	}
	if len(c.ServerPIDs) > 0 {
		c.ServerPID = c.ServerPIDs[0]
	}
	for _, u := range strings.Split(c.URL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			c.URLs = append(c.URLs, u)
		}
	}
	if len(c.URLs) == 0 {
		return c, errors.New("-url is empty")
	}
	if len(c.URLs) > 1 {
		switch c.Scenario {
		case "fanout", "ticks", "ramp":
		default:
			return c, fmt.Errorf("several -url go with -scenario fanout, ticks or ramp, not %s", c.Scenario)
		}
	}
	if c.Single && len(c.URLs) < 2 {
		return c, errors.New("-single compares with several -url; give more than one")
	}
	for _, u := range c.URLs {
		if c.Scenario != "relay" {
			if err := checkLoopback(u, c.AllowRemote); err != nil {
				return c, err
			}
		}
		ws, err := benchclient.SocketURL(u)
		if err != nil {
			return c, err
		}
		c.wsURLs = append(c.wsURLs, ws)
	}
	c.wsURL = c.wsURLs[0]
	c.MaxConns = min(c.MaxConns, fileLimit()-200)
	return c, nil
}

func parseSources(s string) ([]net.IP, error) {
	if s == "" {
		return nil, nil
	}
	var out []net.IP
	for _, f := range strings.Split(s, ",") {
		ip := net.ParseIP(strings.TrimSpace(f))
		if ip == nil || !ip.IsLoopback() || ip.To4() == nil {
			return nil, fmt.Errorf("-source-ips: %q is not an IPv4 loopback address", f)
		}
		out = append(out, ip)
	}
	return out, nil
}

func parsePIDs(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-server-pid: %q is not a process id", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// tickPeriod is how often a follower expects a tick: the server's
// interval, or the slower rate it asked for; 0 when it asked for none.
func (c config) tickPeriod() time.Duration {
	switch {
	case c.ClientTick < 0:
		return c.Tick
	case c.ClientTick == 0:
		return 0
	default:
		return max(c.Tick, time.Duration(c.ClientTick)*time.Millisecond)
	}
}

// checkLoopback refuses a target that is not on this machine: the tool
// generates load, and pointing it elsewhere must be a deliberate choice.
func checkLoopback(raw string, allowRemote bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	if allowRemote {
		return nil
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ips := []net.IP{net.ParseIP(host)}
	if ips[0] == nil {
		if ips, err = net.LookupIP(host); err != nil {
			return fmt.Errorf("-url: %w", err)
		}
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("-url %s is not a loopback address; pass -allow-remote to load another machine", raw)
		}
	}
	return nil
}

// run executes the chosen scenario.
func run(ctx context.Context, cfg config) (*report, error) {
	rep := &report{Target: cfg.URL, Started: time.Now()}
	var err error
	switch cfg.Scenario {
	case "connect":
		err = runConnect(ctx, cfg, rep)
	case "join":
		err = runJoin(ctx, cfg, rep)
	case "fanout", "ticks":
		err = runPlaying(ctx, cfg, rep)
	case "relay":
		err = runRelay(ctx, cfg, rep)
	case "idle":
		err = runIdle(ctx, cfg, rep)
	case "ramp":
		err = runRamp(ctx, cfg, rep)
	case "floor":
		err = runFloor(ctx, cfg, rep)
	}
	rep.Finished = time.Now()
	return rep, err
}
