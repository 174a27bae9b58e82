// Command bandsync runs the BandSync server: Socket.IO on /socket.io/, the
// HTTP API, and the sync engine, configured from the environment and .env.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bandsync/bandsync/internal/config"
	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/events"
	"github.com/bandsync/bandsync/internal/httpapi"
	"github.com/bandsync/bandsync/internal/metrics"
	"github.com/bandsync/bandsync/internal/redisstore"
	"github.com/bandsync/bandsync/internal/socketio"
	"github.com/bandsync/bandsync/internal/store"
	"github.com/bandsync/bandsync/internal/web"
)

// Set at build time by `make release`:
// -ldflags "-X main.version=... -X main.commit=... -X main.date=...".
var (
	version = "dev"
	commit  = "unknown"
	date    = "unknown"
)

func main() {
	showVersion := flag.Bool("version", false, "print the version and exit")
	healthcheck := flag.Bool("healthcheck", false, "exit 0 if the server configured by the environment answers GET /readyz with 200, 1 otherwise (for a container HEALTHCHECK: a scratch image has no curl)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bandsync: unexpected arguments %q (configuration comes from the environment and .env)\n", flag.Args())
		os.Exit(2)
	}
	if *showVersion {
		fmt.Println(versionString())
		return
	}

	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bandsync: invalid configuration:\n%v\n", err)
		os.Exit(2)
	}
	if *healthcheck {
		if err := probe(cfg, 3*time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "bandsync: not ready: %v\n", err)
			os.Exit(1)
		}
		return
	}
	log := config.NewLogger(cfg, os.Stderr)
	if cfg.OpenCORSOnNetwork() {
		log.Warn("CORS_ORIGIN=* on a network address: any web page a band member opens can drive this server through their browser; set CORS_ORIGIN to the app's origin(s) or HOST=127.0.0.1",
			"CORS_ORIGIN", cfg.CORSOrigin, "HOST", cfg.Host)
	}
	slog.SetDefault(log)
	log.Debug("configuration", "config", cfg) // secrets redacted by Config.LogValue
	if len(cfg.Ignored) > 0 {
		log.Warn("these variables of the original server are set but have no effect here: "+strings.Join(cfg.Ignored, ", "), "variables", len(cfg.Ignored))
	}
	if err := run(cfg, log); err != nil {
		log.Error("server stopped", "err", err)
		os.Exit(1)
	}
}

func run(cfg config.Config, log *slog.Logger) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()
	start := time.Now()

	st, rs, err := openStore(cfg, log)
	if err != nil {
		return err
	}
	if rs != nil {
		defer rs.Close()
	}

	var eng *engine.Engine
	mon := metrics.New(metrics.Options{
		Interval: cfg.MetricsInterval, Retention: cfg.MetricsRetention, SyncTarget: cfg.SyncTargetLatency,
		InstanceID: cfg.InstanceID, Logger: log,
		History: redisHistory(rs, cfg), StoreUnavailable: redisDownSince(rs),
		Gauges: func() metrics.Gauges {
			s := eng.Stats()
			return metrics.Gauges{Sessions: s.Sessions, PlayingSessions: s.PlayingSessions, Members: s.Members}
		},
	})

	sopts := socketio.Options{
		PingInterval: cfg.PingInterval, PingTimeout: cfg.PingTimeout, MaxPayload: cfg.MaxPayload,
		WriteQueueSize: cfg.WriteQueueSize, MaxWriteBatch: cfg.MaxEventBatchSize, MaxFrameRate: frameBudget(cfg),
		CompressionThreshold: cfg.CompressionLimit, Logger: log,
		CheckOrigin: func(origin string) bool { return httpapi.OriginAllowed(cfg.CORSOrigin, origin) },
	}
	var rrec *redisstore.Recovery
	switch {
	case rs != nil:
		rrec = rs.Recovery(cfg.RecoveryWindow, events.SessionOfRoom)
		sopts.Recovery = rrec
	case cfg.RecoveryWindow > 0:
		sopts.Recovery = socketio.NewMemoryRecovery(cfg.RecoveryWindow, 100_000, cfg.RecoveryBuffer)
	}
	handlers := events.New(mon, events.Options{
		RateLimitWindow: cfg.RateLimitWindow, RateLimitMaxRequests: cfg.RateLimitMaxRequests,
		RateLimitMaxViolations: cfg.RateLimitMaxViolations, HeartbeatInterval: cfg.HeartbeatInterval, Logger: log,
	})
	handlers.Bind(&sopts)
	sio := socketio.NewServer(sopts)

	eng = engine.New(engine.Config{
		TickInterval: cfg.ScrollTickInterval, LeaderGrace: cfg.LeaderGrace, RecoveryWindow: cfg.RecoveryWindow,
		MaxMembers: cfg.MaxSessionMembers, MaxSessions: cfg.MaxSessions,
		OpenLeadership: cfg.LeaderPolicy == "open",
	}, engine.SystemClock(), events.Outbox(sio), st, log)
	handlers.Register(sio, eng)
	if rs != nil {
		rrec.SetFollow(eng.Follow)
		rs.OnDeadInstance(eng.Reap)
	}

	api := httpapi.Options{
		Health: httpapi.HealthFunc(func() httpapi.HealthReport {
			status := httpapi.StatusHealthy
			redisUp := rs != nil && rs.Available()
			if rs != nil && !redisUp {
				status = httpapi.StatusDegraded // serving from memory until Redis returns
			}
			if sio.Draining() {
				status = httpapi.StatusDraining
			}
			return httpapi.HealthReport{
				Status: status, Uptime: time.Since(start).Seconds(),
				Connections: int(sio.Stats().Connections), Sessions: eng.Stats().Sessions,
				Redis:      httpapi.RedisHealth{Connected: redisUp, Mode: st.Mode()},
				InstanceID: cfg.InstanceID, Version: version,
			}
		}),
		// Ready while not draining. A Redis outage keeps the instance ready:
		// it serves from memory (the fallback is accepted by design), and
		// taking every instance out of rotation at once would drop the bands.
		Ready: func() error {
			if sio.Draining() {
				return errors.New("draining: shutting down")
			}
			return nil
		},
		Sessions:   sessionsJSON{eng},
		SocketIO:   sio,
		Static:     web.Handler(),
		Logger:     log,
		CORSOrigin: cfg.CORSOrigin, RateLimitWindow: cfg.HTTPRateLimitWindow, RateLimitMax: cfg.HTTPRateLimitMaxRequests, TrustProxy: cfg.TrustProxy,
		AdminToken: cfg.AdminToken,
	}
	if cfg.EnableMetrics {
		api.Metrics = httpapi.MetricsFrom(mon)
	}

	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr(), err)
	}
	// Timeouts bound what a slow or idle HTTP client holds (a descriptor
	// and a goroutine); WebSocket connections drop them at the handshake.
	srv := &http.Server{Handler: httpapi.New(api), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}

	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if rs != nil {
		rs.Start(bg) // waits for one PING at most, so the first sessions are followed
		wg.Add(1)
		go func() { defer wg.Done(); rrec.Run(bg) }()
	}
	for _, fn := range []func(context.Context){eng.Run, handlers.Run, mon.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); fn(bg) }()
	}
	if cfg.PprofAddr != "" {
		go servePprof(cfg.PprofAddr, log)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("bandsync listening", "addr", ln.Addr().String(), "store", st.Mode(),
		"note", storeNote(st, rs), "instanceId", cfg.InstanceID, "version", version, "commit", commit, "built", date,
		"tickInterval", cfg.ScrollTickInterval, "leaderPolicy", cfg.LeaderPolicy)

	select {
	case err := <-serveErr:
		stopBG()
		return err
	case <-ctx.Done():
	}
	return shutdown(cfg, log, srv, sio, eng, stopBG, &wg)
}

// shutdown drains: /health turns 503 "draining" and new upgrades are
// refused at once; every socket is flushed and closed so its client
// reconnects elsewhere; state is flushed to the store; and the whole
// sequence is bounded by SHUTDOWN_TIMEOUT_MS.
func shutdown(cfg config.Config, log *slog.Logger, srv *http.Server, sio *socketio.Server, eng *engine.Engine, stopBG context.CancelFunc, wg *sync.WaitGroup) error {
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := sio.Shutdown(ctx); err != nil {
		log.Warn("sockets still open at the shutdown deadline", "err", err)
	}
	stopBG()
	wg.Wait()
	if err := eng.FlushAll(ctx); err != nil {
		log.Warn("flushing sessions failed", "err", err)
	}
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("http shutdown", "err", err)
	}
	log.Info("stopped")
	return nil
}

// openStore returns the memory store, or with REDIS_URL or REDIS_HOST set
// the Redis backend (also returned as rs). Redis being unreachable is not
// an error: the instance starts degraded, from memory, and catches up when
// Redis answers.
func openStore(cfg config.Config, log *slog.Logger) (st store.Shared, rs *redisstore.Redis, err error) {
	if !cfg.RedisConfigured() {
		// A session unchanged for SESSION_IDLE_TIMEOUT_MS expires, as a
		// Redis session does after SESSION_TTL; one nobody is in, after
		// 2 minutes at most (docs/security.md: session squatting).
		return store.NewMemoryWith(store.MemoryOptions{Instance: cfg.InstanceID, TTL: cfg.SessionIdleTimeout,
			EmptyTTL: 2 * time.Minute}), nil, nil
	}
	rs, err = redisstore.Open(redisstore.Options{
		Conn: redisstore.Conn{URL: cfg.RedisURL, Host: cfg.RedisHost, Port: cfg.RedisPort,
			Password: cfg.RedisPassword, DB: cfg.RedisDB},
		KeyPrefix: cfg.RedisKeyPrefix, InstanceID: cfg.InstanceID, SessionTTL: cfg.SessionTTL,
		LogMaxLen: cfg.RedisLogMaxLen, Heartbeat: cfg.RedisHeartbeat, RecoveryWindow: cfg.RecoveryWindow,
		Logger: log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("redis: %w", err)
	}
	return rs, rs, nil
}

func storeNote(st store.Shared, rs *redisstore.Redis) string {
	if rs != nil {
		return "using Redis " + rs.Describe() + "; several instances may share it"
	}
	return "using the in-memory store: state lives in this process only (set REDIS_URL or REDIS_HOST for Redis)"
}

func redisHistory(rs *redisstore.Redis, cfg config.Config) metrics.HistoryStore {
	if rs == nil {
		return nil // the monitor's own ring
	}
	return rs.History(cfg.MetricsRetention, int(cfg.MetricsRetention/cfg.MetricsInterval))
}

func redisDownSince(rs *redisstore.Redis) func() time.Time {
	if rs == nil {
		return nil
	}
	return rs.DownSince
}

// sessionsJSON serves /sessions and /sessions/:id from the engine.
type sessionsJSON struct{ eng *engine.Engine }

func (s sessionsJSON) SessionJSON(id string) (any, bool) {
	st, ok := s.eng.Session(id)
	return st, ok
}

func (s sessionsJSON) SessionList(limit int) ([]any, int) {
	ids, total := s.eng.SessionIDs(limit)
	states := make([]any, 0, len(ids))
	for _, id := range ids {
		// A session swept between the listing and here is left out.
		if st, ok := s.eng.Session(id); ok {
			states = append(states, st)
		}
	}
	return states, total
}

// servePprof serves the profiler on its own listener, apart from the
// public API and its middleware.
func servePprof(addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Info("profiler listening", "addr", addr)
	if err := http.ListenAndServe(addr, mux); err != nil {
		log.Error("profiler stopped", "err", err)
	}
}

// frameBudget is the transport's per-socket frame budget: twice what the
// event rate limit lets through, never under the transport's own 1,000/s,
// so that raising RATE_LIMIT_MAX_REQUESTS is not undone a layer below.
func frameBudget(cfg config.Config) int {
	perSecond := 0
	if cfg.RateLimitWindow > 0 {
		perSecond = int(float64(cfg.RateLimitMaxRequests) / cfg.RateLimitWindow.Seconds())
	}
	return max(1000, 2*cfg.RateLimitMaxRequests, 2*perSecond)
}
