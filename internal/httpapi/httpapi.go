// Package httpapi is BandSync's HTTP surface:
// /health, /metrics, /metrics/history and /sessions/{sessionId}, with the
// Socket.IO endpoint and an optional web app mounted beside them. Every
// response goes through the same middleware as the original Express server:
// Helmet's default security headers, CORS per CORS_ORIGIN, a per-IP rate
// limit, and recovery from handler panics.
package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/munnerz/goautoneg"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bandsync/bandsync/internal/protocol"
)

// Health statuses reported by /health.
const (
	StatusHealthy  = "healthy"
	StatusDegraded = "degraded" // running on the in-memory fallback
	StatusDraining = "draining" // shutting down; answered with 503
)

// HealthReport is the body of GET /health.
type HealthReport struct {
	Status      string      `json:"status"` // StatusHealthy, StatusDegraded or StatusDraining
	Uptime      float64     `json:"uptime"` // seconds since start, like Node's process.uptime()
	Connections int         `json:"connections"`
	Sessions    int         `json:"sessions"`
	Redis       RedisHealth `json:"redis"`
	InstanceID  string      `json:"instanceId"`
	Version     string      `json:"version"`
}

// RedisHealth is the redis part of a HealthReport.
type RedisHealth struct {
	Connected bool   `json:"connected"`
	Mode      string `json:"mode"` // e.g. "redis" or "memory"
}

// Health reports the server's health for GET /health.
type Health interface {
	Health() HealthReport
}

// HealthFunc adapts a function to Health.
type HealthFunc func() HealthReport

// Health implements Health.
func (f HealthFunc) Health() HealthReport { return f() }

// Sessions looks up a session's state (docs/protocol.md) for
// GET /sessions/{sessionId}; the value is encoded as JSON as it is.
type Sessions interface {
	SessionJSON(id string) (state any, ok bool)
}

// SessionLister is what a Sessions may also do: list the sessions, for
// GET /sessions (the dashboard's per-session view). At most limit states,
// and how many sessions there are in all.
type SessionLister interface {
	SessionList(limit int) (states []any, total int)
}

// maxListedSessions bounds GET /sessions: a dashboard shows a few dozen
// bands; a server with thousands answers with the first ones and the total.
const maxListedSessions = 200

// Metrics serves /metrics and /metrics/history. Snapshot and History results
// are encoded as JSON as they are; Gatherer feeds the Prometheus exposition.
// MetricsFrom adapts a concretely typed monitor to it.
type Metrics interface {
	Snapshot() any
	History(ctx context.Context, since time.Time) (any, error)
	Gatherer() prometheus.Gatherer
}

// MetricsFrom adapts any monitor whose Snapshot and History return concrete
// types (as internal/metrics' Monitor does) to Metrics, so this package need
// not import it: httpapi.MetricsFrom(monitor).
func MetricsFrom[S, H any](m interface {
	Snapshot() S
	History(ctx context.Context, since time.Time) (H, error)
	Gatherer() prometheus.Gatherer
}) Metrics {
	return metricsAdapter[S, H]{m}
}

type metricsAdapter[S, H any] struct {
	m interface {
		Snapshot() S
		History(ctx context.Context, since time.Time) (H, error)
		Gatherer() prometheus.Gatherer
	}
}

func (a metricsAdapter[S, H]) Snapshot() any                 { return a.m.Snapshot() }
func (a metricsAdapter[S, H]) Gatherer() prometheus.Gatherer { return a.m.Gatherer() }
func (a metricsAdapter[S, H]) History(ctx context.Context, since time.Time) (any, error) {
	return a.m.History(ctx, since)
}

// Options configures New. A nil Health, Sessions, Metrics or SocketIO leaves
// its routes answering 404 (Metrics is nil when ENABLE_METRICS=false).
type Options struct {
	Health   Health
	Ready    Readiness // GET /readyz; nil is always ready
	Sessions Sessions
	Metrics  Metrics
	SocketIO http.Handler // mounted at /socket.io/
	Static   http.Handler // optional, mounted at /; without it unknown paths get a JSON 404

	Logger *slog.Logger // nil discards

	// CORSOrigin has CORS_ORIGIN semantics (see OriginAllowed); "" means "*".
	CORSOrigin string

	// At most RateLimitMax requests per RateLimitWindow per client IP, outside
	// /socket.io/ (sockets have their own per-event limit). Zero disables.
	RateLimitWindow time.Duration
	RateLimitMax    int

	// TrustProxy takes the client IP from the last X-Forwarded-For entry, the
	// one a single reverse proxy in front of the server appends.
	TrustProxy bool

	// AdminToken (ADMIN_TOKEN) is what GET /sessions asks for, as
	// "Authorization: Bearer <token>": the list names every band's
	// session id, which is all a stranger needs to join one. Without it
	// the list is served to loopback clients only.
	AdminToken string

	now func() time.Time // tests drive the rate limiter's clock
}

// socketIOPrefix is where the Socket.IO server lives; it is exempt from the
// HTTP rate limit and must keep http.Hijacker working for the upgrade.
const socketIOPrefix = "/socket.io/"

// New returns the server's root handler.
func New(opts Options) http.Handler {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &api{opts: opts, log: log}
	if opts.Metrics != nil {
		g := opts.Metrics.Gatherer()
		if g == nil {
			g = prometheus.DefaultGatherer
		}
		a.prometheus = promhttp.HandlerFor(g, promhttp.HandlerOpts{
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelError),
			EnableOpenMetrics: true,
		})
	}

	mux := http.NewServeMux()
	a.route(mux, "/health", a.health)
	a.route(mux, "/metrics", a.metrics)
	a.route(mux, "/metrics/history", a.metricsHistory)
	a.route(mux, "/sessions", a.sessionList)
	a.route(mux, "/sessions/{sessionId...}", a.session)
	if opts.SocketIO != nil {
		mux.Handle(socketIOPrefix, opts.SocketIO)
	}
	if opts.Static != nil {
		mux.Handle("/", opts.Static)
	} else {
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, protocol.CodeNotFound, "no such endpoint: "+r.URL.Path)
		})
	}

	var h http.Handler = mux
	limiter := newRateLimiter(opts.RateLimitMax, opts.RateLimitWindow, opts.TrustProxy)
	if limiter != nil && opts.now != nil {
		limiter.now = opts.now
	}
	h = limiter.middleware(h)
	h = a.probes(h)
	h = newCORS(opts.CORSOrigin).Handler(h)
	h = securityHeaders(h, opts.TrustProxy)
	return recoverPanics(log, h)
}

type api struct {
	opts       Options
	log        *slog.Logger
	prometheus http.Handler
}

// route registers a read-only endpoint and, for its other methods, a JSON 405
// instead of the mux's plain-text one.
func (a *api) route(mux *http.ServeMux, pattern string, h http.HandlerFunc) {
	mux.HandleFunc("GET "+pattern, h)
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, protocol.CodeMethodNotAllowed, r.Method+" is not allowed here")
	})
}

func (a *api) health(w http.ResponseWriter, r *http.Request) {
	if a.opts.Health == nil {
		writeError(w, http.StatusNotFound, protocol.CodeNotFound, "health reporting is not configured")
		return
	}
	report := a.opts.Health.Health()
	status := http.StatusOK
	if report.Status == StatusDraining {
		// Load balancers take a 503 as "stop sending new clients here".
		status = http.StatusServiceUnavailable
	}
	a.respond(w, r, status, report)
}

func (a *api) metrics(w http.ResponseWriter, r *http.Request) {
	if a.opts.Metrics == nil {
		writeError(w, http.StatusNotFound, protocol.CodeMetricsDisabled, "metrics are disabled (ENABLE_METRICS=false)")
		return
	}
	var prom bool
	switch f := r.URL.Query().Get("format"); f {
	case "prometheus", "openmetrics":
		prom = true
	case "json":
	case "":
		prom = prefersPrometheus(r.Header.Get("Accept"))
	default:
		writeError(w, http.StatusBadRequest, protocol.CodeInvalidQuery, "format must be json or prometheus, not "+strconv.Quote(f))
		return
	}
	if prom {
		a.prometheus.ServeHTTP(w, r)
		return
	}
	a.respond(w, r, http.StatusOK, a.opts.Metrics.Snapshot())
}

// prefersPrometheus reports whether an Accept header ranks a Prometheus
// exposition format above JSON. Wildcards (curl's */*, a browser's */*;q=0.8)
// resolve to JSON, so only a scraper that asks for text gets text.
func prefersPrometheus(accept string) bool {
	switch goautoneg.Negotiate(accept, []string{"application/json", "text/plain", "application/openmetrics-text"}) {
	case "text/plain", "application/openmetrics-text":
		return true
	}
	return false
}

func (a *api) metricsHistory(w http.ResponseWriter, r *http.Request) {
	if a.opts.Metrics == nil {
		writeError(w, http.StatusNotFound, protocol.CodeMetricsDisabled, "metrics are disabled (ENABLE_METRICS=false)")
		return
	}
	var since time.Time
	if s := r.URL.Query().Get("since"); s != "" {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ms < 0 {
			writeError(w, http.StatusBadRequest, protocol.CodeInvalidQuery, "since must be a time in epoch milliseconds, not "+strconv.Quote(s))
			return
		}
		since = time.UnixMilli(ms)
	}
	samples, err := a.opts.Metrics.History(r.Context(), since)
	if err != nil {
		a.log.Error("reading metrics history", "err", err)
		writeError(w, http.StatusInternalServerError, protocol.CodeInternal, "could not read the metrics history")
		return
	}
	a.respond(w, r, http.StatusOK, struct {
		Samples any `json:"samples"`
	}{samples})
}

func (a *api) session(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("sessionId")
	if !protocol.ValidSessionID(id) {
		writeError(w, http.StatusBadRequest, protocol.CodeInvalidSessionID, fmt.Sprintf("a session id is 1-%d characters of A-Z, a-z, 0-9, _ and -", protocol.MaxSessionIDLen))
		return
	}
	if a.opts.Sessions == nil {
		writeError(w, http.StatusNotFound, protocol.CodeSessionNotFound, "no session "+strconv.Quote(id))
		return
	}
	state, ok := a.opts.Sessions.SessionJSON(id)
	if !ok {
		writeError(w, http.StatusNotFound, protocol.CodeSessionNotFound, "no session "+strconv.Quote(id))
		return
	}
	a.respond(w, r, http.StatusOK, state)
}

func (a *api) sessionList(w http.ResponseWriter, r *http.Request) {
	if !a.admin(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="bandsync"`)
		msg := "listing sessions needs the admin token (Authorization: Bearer <ADMIN_TOKEN>)"
		if a.opts.AdminToken == "" {
			msg = "listing sessions is served to loopback clients only; set ADMIN_TOKEN to list them from elsewhere"
		}
		writeError(w, http.StatusUnauthorized, protocol.CodeUnauthorized, msg)
		return
	}
	lister, ok := a.opts.Sessions.(SessionLister)
	if !ok {
		writeError(w, http.StatusNotFound, protocol.CodeNotFound, "listing sessions is not configured")
		return
	}
	states, total := lister.SessionList(maxListedSessions)
	if states == nil {
		states = []any{}
	}
	a.respond(w, r, http.StatusOK, struct {
		Sessions []any `json:"sessions"`
		Total    int   `json:"total"`
	}{states, total})
}

// admin reports whether r may see what only the deployer should: it
// carries the admin token, or, when none is configured, it comes from this
// machine (through a trusted proxy, from the address the proxy saw).
func (a *api) admin(r *http.Request) bool {
	if a.opts.AdminToken != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		return ok && subtle.ConstantTimeCompare([]byte(got), []byte(a.opts.AdminToken)) == 1
	}
	ip, ok := clientIP(r, a.opts.TrustProxy)
	return ok && ip.IsLoopback()
}

// respond writes v as JSON, or a logged 500 when v cannot be encoded (a NaN
// in a snapshot, say).
func (a *api) respond(w http.ResponseWriter, r *http.Request, status int, v any) {
	if err := writeJSON(w, status, v); err != nil {
		a.log.Error("encoding HTTP response", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, protocol.CodeInternal, "internal server error")
	}
}

// writeJSON encodes before writing anything, so a value that cannot be
// encoded leaves the response untouched for the caller to answer 500.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store") // live state: never serve it from a cache
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
	return nil
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, message
	_ = writeJSON(w, status, b) // cannot fail: two strings
}
