package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bandsync/bandsync/internal/benchclient"
	"github.com/bandsync/bandsync/internal/protocol"
)

func checkCap(cfg config, n int) error {
	if n > cfg.MaxConns {
		return fmt.Errorf("%d connections exceed the cap of %d (-max-conns, and the open-file limit: raise it with ulimit -n)", n, cfg.MaxConns)
	}
	return nil
}

func repeat(v, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// runConnect times N connections from TCP dial to the Socket.IO CONNECT
// reply, -concurrency at a time. The connections stay open (answering
// pings) until all are made, so the last ones are made against a server
// already holding the first.
func runConnect(ctx context.Context, cfg config, rep *report) error {
	if err := checkCap(cfg, cfg.N); err != nil {
		return err
	}
	d := newDialer(cfg.wsURL, cfg.SourceIPs, cfg.N, cfg.Readers == "goroutine")
	conns := make([]*benchclient.Conn, cfg.N)
	lats := make([]benchclient.Samples, cfg.Concurrency)
	var (
		mu      sync.Mutex
		fails   int
		lastErr error
	)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	jobs := make(chan int)
	var wg sync.WaitGroup
	cpu := startCPU(cfg.ServerPIDs)
	t0 := time.Now()
	for w := range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				start := time.Now()
				c, err := d.dial()
				if err != nil {
					mu.Lock()
					fails, lastErr = fails+1, err
					mu.Unlock()
					continue
				}
				lats[w].Add(time.Since(start))
				c.Start(nil, nil)
				conns[i] = c
			}
		}()
	}
feed:
	for i := range cfg.N {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(t0)
	use := cpu.stop()
	var all benchclient.Samples
	for i := range lats {
		all.Merge(&lats[i])
	}
	r := rep.add(distRow("connect", "server", fmt.Sprintf("n=%d c=%d", cfg.N, cfg.Concurrency), "dial to CONNECT", &all))
	r.Missing = ptr(int64(fails))
	r.Note = fmt.Sprintf("%.0f conn/s; %s", float64(all.Len())/elapsed.Seconds(), use.note())
	r.Extra = map[string]any{"elapsedMs": elapsed.Milliseconds(), "failures": fails, "cpu": use}
	if fails > 0 {
		r.Note += "; last error: " + lastErr.Error()
	}
	return ctx.Err()
}

// runJoin times join_session -> snapshot round trips, one after the
// other, each on its own already-connected socket and into a fresh
// session, so neither the per-socket rate limit nor a crowded room is
// part of the figure.
func runJoin(ctx context.Context, cfg config, rep *report) error {
	if err := checkCap(cfg, cfg.N); err != nil {
		return err
	}
	d := newDialer(cfg.wsURL, cfg.SourceIPs, cfg.N, cfg.Readers == "goroutine")
	conns := make([]*benchclient.Conn, cfg.N)
	snaps := make([]chan time.Time, cfg.N)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	// Connect the pool in parallel; only the joins are timed.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		derr error
	)
	sem := make(chan struct{}, setupParallel)
	for i := range cfg.N {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := d.dial()
			if err != nil {
				mu.Lock()
				derr = err
				mu.Unlock()
				return
			}
			ch := make(chan time.Time, 1)
			c.Start(func(now time.Time, pkt []byte) {
				if name, _, ok := benchclient.Event(pkt); ok && string(name) == protocol.EventSnapshot {
					select {
					case ch <- now:
					default:
					}
				}
			}, nil)
			conns[i], snaps[i] = c, ch
		}()
	}
	wg.Wait()
	if derr != nil {
		return fmt.Errorf("connect: %w", derr)
	}
	runID := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	var lat benchclient.Samples
	timeouts := 0
	cpu := startCPU(cfg.ServerPIDs)
	for i, c := range conns {
		if ctx.Err() != nil {
			break
		}
		arg := []byte(`{"sessionId":"join-` + runID + `-` + strconv.Itoa(i) + `","displayName":"j"}`)
		sent := time.Now()
		if err := c.Emit(protocol.EventJoinSession, arg); err != nil {
			return fmt.Errorf("join_session: %w", err)
		}
		select {
		case at := <-snaps[i]:
			lat.Add(at.Sub(sent))
		case <-time.After(5 * time.Second):
			timeouts++
		case <-ctx.Done():
		}
	}
	use := cpu.stop()
	r := rep.add(distRow("join", "server", fmt.Sprintf("n=%d", cfg.N), "join_session to snapshot", &lat))
	r.Missing = ptr(int64(timeouts))
	r.Note = use.note()
	r.Extra = map[string]any{"cpu": use}
	return ctx.Err()
}

// runPlaying is the fanout and ticks scenarios: S sessions of M members,
// all playing, leaders seeking. With -baseline, the relay is measured with
// the same shape right before and right after the server. With several
// -url the members are spread over the instances, and -single then
// measures the same shape on the first instance alone, in the same series.
func runPlaying(ctx context.Context, cfg config, rep *report) error {
	if err := checkCap(cfg, cfg.Sessions*cfg.Members); err != nil {
		return err
	}
	seek := cfg.Interval
	if cfg.Scenario == "ticks" {
		seek = cfg.SeekEvery
	}
	shape := fmt.Sprintf("%dx%d", cfg.Sessions, cfg.Members)
	// The relay's p99 per metric, over the baseline runs.
	floor := map[string][]time.Duration{}
	relayDelivery := 1.0
	baseline := func() error {
		w, err := relayWindow(ctx, cfg, seek)
		if err != nil {
			return fmt.Errorf("relay baseline: %w", err)
		}
		if cfg.tickPeriod() > 0 {
			relayDelivery = min(relayDelivery, w.delivery(cfg.tickPeriod()))
		}
		for _, r := range windowRows(rep, "relay", "relay", shape, w, cfg, seek) {
			floor[r.Metric] = append(floor[r.Metric], r.summary.P99)
		}
		return nil
	}
	if cfg.Baseline {
		if err := baseline(); err != nil {
			return err
		}
	}
	type target struct {
		name   string
		urls   []string
		faulty bool // the -redis-proxy fault runs during this one
	}
	targets := []target{{"server", cfg.wsURLs, true}}
	if n := len(cfg.wsURLs); n > 1 {
		targets[0].name = fmt.Sprintf("%d instances", n)
		if cfg.Single {
			// After the spread run: an overloaded single run can leave
			// the instances busy (Redis timed out, sessions to write
			// back), which would disturb the run the series is for.
			targets = append(targets, target{"1 instance", cfg.wsURLs[:1], false})
		}
	}
	var rows []*row
	for _, t := range targets {
		w, err := playWindow(ctx, cfg, t.urls, seek, cfg.ServerPIDs, t.faulty)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		rs := windowRows(rep, cfg.Scenario, t.name, shape, w, cfg, seek)
		if cfg.redis != nil && t.faulty {
			rs[0].Note += "; " + cfg.redis.String()
		}
		rows = append(rows, rs...)
	}
	if !cfg.Baseline {
		return nil
	}
	if err := baseline(); err != nil {
		return err
	}
	// Ratio of p99s, against the mean of the relay's before and after.
	for _, r := range rows {
		ps := floor[r.Metric]
		var sum time.Duration
		for _, p := range ps {
			sum += p
		}
		if r.Metric == "position error" || len(ps) == 0 || sum <= 0 || r.Count == 0 {
			continue
		}
		ratio := float64(r.summary.P99) / (float64(sum) / float64(len(ps)))
		r.RatioToRelay = ptr(math.Round(ratio*100) / 100)
	}
	if relayDelivery < 0.99 {
		// The relay shares the bench's process and the machine's cores;
		// past what the machine can carry it is no floor any more.
		rows[0].Note += fmt.Sprintf("; the relay itself was saturated (tick delivery %.1f%%): the ratios are not against a floor", relayDelivery*100)
	}
	return nil
}

// runRelay measures only the in-process relay with the fanout shape.
func runRelay(ctx context.Context, cfg config, rep *report) error {
	if err := checkCap(cfg, cfg.Sessions*cfg.Members); err != nil {
		return err
	}
	w, err := relayWindow(ctx, cfg, cfg.Interval)
	if w != nil {
		windowRows(rep, "relay", "relay", fmt.Sprintf("%dx%d", cfg.Sessions, cfg.Members), w, cfg, cfg.Interval)
	}
	return err
}

func relayWindow(ctx context.Context, cfg config, seek time.Duration) (*window, error) {
	// The relay ticks everyone at the rate the members asked for (none
	// for 0), so it carries the same traffic as the server.
	r, err := benchclient.ListenRelay("127.0.0.1:0", cfg.tickPeriod())
	if err != nil {
		return nil, err
	}
	defer r.Close()
	u, err := benchclient.SocketURL(r.URL())
	if err != nil {
		return nil, err
	}
	return playWindow(ctx, cfg, []string{u}, seek, nil, false)
}

// playWindow sets up S x M over the instances wsURLs, starts playback,
// waits -warmup and measures one -duration window; the -redis-proxy fault
// runs during it when faulty.
func playWindow(ctx context.Context, cfg config, wsURLs []string, seek time.Duration, pids []int, faulty bool) (*window, error) {
	f := newFleetFor(cfg, wsURLs, cfg.Sessions*cfg.Members)
	defer f.close()
	ss, err := f.addSessions(ctx, repeat(cfg.Members, cfg.Sessions))
	if err != nil {
		return nil, err
	}
	if err := f.play(ctx, ss); err != nil {
		return nil, err
	}
	if err := sleep(ctx, cfg.Warmup); err != nil {
		return nil, err
	}
	if cfg.redis != nil && faulty {
		stop := cfg.redis.during(ctx)
		defer stop()
	}
	return f.measure(ctx, cfg.Duration, seek, pids)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// windowRows reports a window: seek latency first (when seeks ran), then
// the tick metrics (when the target ticks).
func windowRows(rep *report, scenario, target, shape string, w *window, cfg config, seek time.Duration) []*row {
	var rows []*row
	extra := map[string]any{
		"windowMs": w.duration.Milliseconds(), "followers": w.followers, "cpu": w.cpu,
		"drops": w.drops, "errorEvents": w.errEvents, "tickIntervalMs": cfg.Tick.Milliseconds(), "seekIntervalMs": seek.Milliseconds(),
		"clientTickMs": cfg.ClientTick,
	}
	run := w.cpu.note()
	if w.drops > 0 {
		run += fmt.Sprintf("; %d connections dropped (%s)", w.drops, w.lastDrop)
	}
	if w.errEvents > 0 {
		run += fmt.Sprintf("; %d error events (%s)", w.errEvents, w.lastError)
	}
	if seek > 0 {
		r := rep.add(distRow(scenario, target, shape, "seek latency", &w.seekLat))
		r.Missing = ptr(w.missing())
		r.Note = fmt.Sprintf("every %v; %d first by snapshot; %s", seek, w.bySnapshot, run)
		r.Extra = extra
		extra["seekReceipts"], extra["seekReceiptsExpected"], extra["firstBySnapshot"] = w.seekLat.Len(), w.seeksExpected, w.bySnapshot
		rows = append(rows, r)
	}
	if period := cfg.tickPeriod(); period == 0 {
		// The members asked for no ticks: any that came are a fault.
		r := rep.add(distRow(scenario, target, shape, "tick lag", &w.lag))
		r.Note = fmt.Sprintf("no ticks asked for (tickIntervalMs 0); %d received", w.ticks)
		if seek == 0 {
			r.Note += "; " + run
			r.Extra = extra
		}
		rows = append(rows, r)
	} else {
		r := rep.add(distRow(scenario, target, shape, "tick lag", &w.lag))
		r.Delivery = ptr(w.delivery(period))
		r.Note = fmt.Sprintf("%d ticks / %d expected", w.ticks, int64(float64(w.followers)*float64(w.duration)/float64(period)))
		if period != cfg.Tick {
			r.Note += fmt.Sprintf(" (one per %v asked for)", period)
		}
		if seek == 0 {
			r.Note += "; " + run
			r.Extra = extra
		}
		rows = append(rows, r)
		rows = append(rows, rep.add(distRow(scenario, target, shape, "tick jitter", &w.jitter)))
		if target == "relay" {
			// The relay's seeks carry no serverTimestamp, so its
			// ticks have no anchor to be checked against.
			return rows
		}
		r = rep.add(distRow(scenario, target, shape, "position error", &w.posErr))
		r.Note = fmt.Sprintf("%d stale ticks (pre-seek position after the seek)", w.stale)
		r.Extra = map[string]any{"staleTicks": w.stale}
		rows = append(rows, r)
	}
	return rows
}

// otherBusy is how much CPU (in cores) processes other than the bench
// and the server may use before a run is called disturbed.
const otherBusy = 0.25

// other is the CPU used by neither the bench nor the server, in cores,
// or 0 when unknown.
func (u cpuUse) other() float64 {
	if u.Machine < 0 {
		return 0
	}
	o := u.Machine - u.Bench
	if u.Server >= 0 {
		o -= u.Server
	}
	return max(o, 0)
}

// note says who used the CPU: the bench, the server, the kernel's network
// softirqs, and everything else on the machine (other people's work on a
// shared box).
func (u cpuUse) note() string {
	s := fmt.Sprintf("cpu: bench %.0f%%", u.Bench*100)
	if u.Server >= 0 {
		s += fmt.Sprintf(", server %.0f%%", u.Server*100)
	}
	if u.SoftIRQ >= 0 {
		s += fmt.Sprintf(", softirq %.0f%%", u.SoftIRQ*100)
	}
	switch {
	case u.Machine < 0:
	case u.Server >= 0:
		s += fmt.Sprintf(", other %.0f%%", u.other()*100)
	default:
		s += fmt.Sprintf(", rest of machine %.0f%%", u.other()*100)
	}
	if u.Server >= 0 && u.other() > otherBusy {
		s += " (DISTURBED: other processes were busy)"
	}
	return s
}

// runIdle holds N joined connections (sessions of M) without playback
// and reports the server's resident memory per connection.
func runIdle(ctx context.Context, cfg config, rep *report) error {
	if err := checkCap(cfg, cfg.N); err != nil {
		return err
	}
	m0, err := serverMemory(ctx, cfg.URLs[0], cfg.ServerPID)
	if err != nil {
		return fmt.Errorf("server memory: %w", err)
	}
	sizes := repeat(cfg.Members, cfg.N/cfg.Members)
	if r := cfg.N % cfg.Members; r > 0 {
		sizes = append(sizes, r)
	}
	f := newFleet([]*dialer{newDialer(cfg.wsURL, cfg.SourceIPs, cfg.N, cfg.Readers == "goroutine")}, cfg.Tick, -1)
	defer f.close()
	t0 := time.Now()
	if _, err := f.addSessions(ctx, sizes); err != nil {
		return err
	}
	setup := time.Since(t0)
	// Let the server's buffers from the join storm be released before
	// reading memory; then hold for the window, pings answered.
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	m1, err := serverMemory(ctx, cfg.URLs[0], cfg.ServerPID)
	if err != nil {
		return err
	}
	if err := sleep(ctx, cfg.Duration); err != nil {
		return err
	}
	m2, err := serverMemory(ctx, cfg.URLs[0], cfg.ServerPID)
	if err != nil {
		return err
	}
	var w window
	f.harvest(&w)
	per := float64(m2.rss-m0.rss) / float64(cfg.N)
	src := "/metrics memory.rssBytes"
	if cfg.ServerPID > 0 {
		src = "/proc VmRSS"
	}
	r := rep.add(&row{Scenario: "idle", Target: "server", Shape: fmt.Sprintf("%d in %dx%d", cfg.N, len(sizes), cfg.Members),
		Metric: "server RSS per joined conn", Count: cfg.N, Missing: ptr(w.drops)})
	r.Note = fmt.Sprintf("%.2f KiB/conn after %v held (%.2f KiB right after join); RSS %.1f -> %.1f MiB (%s); set up in %v",
		per/1024, cfg.Duration, float64(m1.rss-m0.rss)/float64(cfg.N)/1024, mib(m0.rss), mib(m2.rss), src, setup.Round(time.Millisecond))
	if m0.goroutines > 0 || m1.goroutines > 0 {
		r.Note += fmt.Sprintf("; goroutines %d -> %d", m0.goroutines, m1.goroutines)
	}
	if m0.connections > 0 {
		// Memory the server kept from earlier connections makes the
		// difference smaller than the truth: measure a fresh server.
		r.Note += fmt.Sprintf("; WARNING: the server already held %d connections at the start", m0.connections)
	}
	r.Extra = map[string]any{"rssBeforeBytes": m0.rss, "rssJoinedBytes": m1.rss, "rssAfterBytes": m2.rss, "bytesPerConn": per,
		"goroutinesBefore": m0.goroutines, "goroutinesAfter": m1.goroutines, "connectionsBefore": m0.connections,
		"setupMs": setup.Milliseconds(), "drops": w.drops}
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// runRamp adds playing sessions step by step until tick lag p99 exceeds
// one tick interval or delivery drops under 99% (when the members take
// ticks), or, with -ramp-seek-p99, seek latency p99 exceeds it or a seek
// is missing, and reports the knee: the last step that met every test.
func runRamp(ctx context.Context, cfg config, rep *report) error {
	f := newFleetFor(cfg, cfg.wsURLs, min(cfg.RampMax*cfg.Members, cfg.MaxConns))
	defer f.close()
	period := cfg.tickPeriod()
	var seek time.Duration
	if cfg.RampSeekP99 > 0 {
		seek = cfg.Interval
	}
	if period == 0 && seek == 0 {
		return errors.New("ramp: the members take no ticks (-client-tick-ms 0), so give -ramp-seek-p99 to have a knee")
	}
	target := "server"
	if n := len(cfg.wsURLs); n > 1 {
		target = fmt.Sprintf("%d instances", n)
	}
	sessions, knee := 0, 0
	var stop string
	for step := 0; ; step++ {
		add := cfg.RampStep
		if step == 0 {
			add = cfg.RampStart
		}
		add = min(add, cfg.RampMax-sessions, (cfg.MaxConns-sessions*cfg.Members)/cfg.Members)
		if add <= 0 {
			stop = "reached -ramp-max or the connection cap without a knee"
			break
		}
		ss, err := f.addSessions(ctx, repeat(cfg.Members, add))
		if err == nil {
			err = f.play(ctx, ss)
		}
		if err == nil {
			err = sleep(ctx, cfg.Warmup)
		}
		if err != nil {
			stop = "set-up failed: " + err.Error()
			break
		}
		sessions += add
		shape := fmt.Sprintf("%dx%d", sessions, cfg.Members)
		var bad []string
		// A failing step is measured once more when something else on
		// the machine was busy: on a shared box the knee should be the
		// server's, not a neighbour's.
		for attempt := 0; attempt < 2; attempt++ {
			w, err := f.measure(ctx, cfg.StepDuration, seek, cfg.ServerPIDs)
			if err != nil {
				return err
			}
			var r *row
			if seek > 0 {
				r = rep.add(distRow("ramp", target, shape, "seek latency", &w.seekLat))
				r.Missing = ptr(w.missing())
			} else {
				r = rep.add(distRow("ramp", target, shape, "tick lag", &w.lag))
			}
			if period > 0 {
				r.Delivery = ptr(w.delivery(period))
			}
			r.Note = w.cpu.note()
			if w.drops > 0 {
				r.Note += fmt.Sprintf("; %d dropped", w.drops)
			}
			if period == 0 {
				r.Note += fmt.Sprintf("; no ticks asked for, %d received", w.ticks)
			}
			r.Extra = map[string]any{"sessions": sessions, "connections": sessions * cfg.Members, "cpu": w.cpu,
				"jitterP99Ms": *ms(w.jitter.Percentile(99)), "tickLagP99Ms": *ms(w.lag.Percentile(99)), "drops": w.drops}
			bad = bad[:0]
			if period > 0 {
				if p := w.lag.Percentile(99); p > cfg.Tick {
					bad = append(bad, fmt.Sprintf("lag p99 %v > %v", p.Round(time.Microsecond), cfg.Tick))
				}
				if d := w.delivery(period); d < 0.99 {
					bad = append(bad, fmt.Sprintf("delivery %.2f%% < 99%%", d*100))
				}
			}
			if seek > 0 {
				if p := w.seekLat.Percentile(99); p > cfg.RampSeekP99 {
					bad = append(bad, fmt.Sprintf("seek p99 %v > %v", p.Round(time.Microsecond), cfg.RampSeekP99))
				}
				if m := w.missing(); m > 0 {
					bad = append(bad, fmt.Sprintf("%d seeks missing", m))
				}
			}
			if w.drops > 0 {
				bad = append(bad, fmt.Sprintf("%d connections dropped", w.drops))
			}
			if len(bad) == 0 {
				break
			}
			if attempt == 0 && w.cpu.other() > otherBusy {
				r.Note += fmt.Sprintf("; failed while other processes used %.0f%% CPU: measuring again", w.cpu.other()*100)
				continue
			}
			r.Note += "; past the knee: " + strings.Join(bad, ", ")
		}
		if len(bad) > 0 {
			stop = strings.Join(bad, ", ")
			break
		}
		knee = sessions
	}
	ticks := fmt.Sprintf("%v ticks", cfg.Tick)
	switch {
	case period == 0:
		ticks = "no ticks (tickIntervalMs 0)"
	case period != cfg.Tick:
		ticks = fmt.Sprintf("one tick per %v", period)
	}
	if seek > 0 {
		ticks += fmt.Sprintf(", a seek per session every %v", seek)
	}
	switch {
	case knee == 0:
		rep.Knee = fmt.Sprintf("none: the first step already failed (%s)", stop)
	case knee == sessions:
		rep.Knee = fmt.Sprintf("not reached: every step up to %d sessions x %d members = %d connections at %s passed (%s)",
			knee, cfg.Members, knee*cfg.Members, ticks, stop)
	default:
		rep.Knee = fmt.Sprintf("%d sessions x %d members = %d connections at %s (stopped: %s)",
			knee, cfg.Members, knee*cfg.Members, ticks, stop)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}
