package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeMonitor has concrete Snapshot and History types, like internal/metrics'
// Monitor, so the tests also prove MetricsFrom adapts such a type.
type fakeMonitor struct {
	snapshot   snapshot
	reg        *prometheus.Registry
	historyErr error

	mu    sync.Mutex
	since time.Time
}

type snapshot struct {
	Connections int     `json:"connections"`
	P95         float64 `json:"p95"`
}

type sample struct {
	At          int64 `json:"at"`
	Connections int   `json:"connections"`
}

func (m *fakeMonitor) Snapshot() snapshot { return m.snapshot }
func (m *fakeMonitor) History(_ context.Context, since time.Time) ([]sample, error) {
	m.mu.Lock()
	m.since = since
	m.mu.Unlock()
	return []sample{{At: 1700000000000, Connections: 3}}, m.historyErr
}
func (m *fakeMonitor) Gatherer() prometheus.Gatherer { return m.reg }

func newFakeMonitor(t *testing.T) *fakeMonitor {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "bandsync_connections", Help: "Open sockets."})
	g.Set(7)
	reg.MustRegister(g)
	return &fakeMonitor{snapshot: snapshot{Connections: 7, P95: 12.5}, reg: reg}
}

type fakeSessions map[string]any

func (s fakeSessions) SessionJSON(id string) (any, bool) { v, ok := s[id]; return v, ok }

func (s fakeSessions) SessionList(limit int) ([]any, int) {
	ids := slices.Sorted(maps.Keys(s))
	total := len(ids)
	if len(ids) > limit {
		ids = ids[:limit]
	}
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = s[id]
	}
	return out, total
}

type server struct {
	h       http.Handler
	monitor *fakeMonitor
	logs    *bytes.Buffer
	health  *HealthReport
}

func newServer(t *testing.T, mutate func(*Options)) *server {
	t.Helper()
	s := &server{monitor: newFakeMonitor(t), logs: &bytes.Buffer{}}
	s.health = &HealthReport{
		Status: StatusHealthy, Uptime: 12.5, Connections: 2, Sessions: 1,
		Redis: RedisHealth{Connected: true, Mode: "redis"}, InstanceID: "test-1", Version: "1.2.3",
	}
	opts := Options{
		Health:   HealthFunc(func() HealthReport { return *s.health }),
		Sessions: fakeSessions{"band-1": map[string]any{"sessionId": "band-1", "tempoBpm": 120}},
		Metrics:  MetricsFrom(s.monitor),
		SocketIO: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusTeapot) // recognisable: proves the request reached it
		}),
		Logger:     slog.New(slog.NewTextHandler(s.logs, nil)),
		CORSOrigin: "*",
	}
	if mutate != nil {
		mutate(&opts)
	}
	s.h = New(opts)
	return s
}

func (s *server) do(method, target string, header ...string) *httptest.ResponseRecorder {
	return s.doFrom("192.0.2.1:1234", method, target, header...)
}

// doFrom sends the request from the client address remote.
func (s *server) doFrom(remote, method, target string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	req.RemoteAddr = remote
	for i := 0; i < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	return rec
}

func decode(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q, want JSON; body %q", ct, rec.Body)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %q", err, rec.Body)
	}
	return m
}

func errorCode(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	e, _ := decode(t, rec)["error"].(map[string]any)
	if e == nil || e["message"] == "" {
		t.Fatalf("body has no error {code, message}: %q", rec.Body)
	}
	code, _ := e["code"].(string)
	return code
}

func TestHealth(t *testing.T) {
	s := newServer(t, nil)
	rec := s.do("GET", "/health")
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	got := decode(t, rec)
	want := map[string]any{
		"status": "healthy", "uptime": 12.5, "connections": 2.0, "sessions": 1.0,
		"redis":      map[string]any{"connected": true, "mode": "redis"},
		"instanceId": "test-1", "version": "1.2.3",
	}
	for k, v := range want {
		if g, _ := json.Marshal(got[k]); string(g) != mustJSON(v) {
			t.Errorf("%s = %s, want %s", k, g, mustJSON(v))
		}
	}

	s.health.Status = StatusDraining
	rec = s.do("GET", "/health")
	if rec.Code != http.StatusServiceUnavailable || decode(t, rec)["status"] != "draining" {
		t.Errorf("draining: status %d body %q, want 503 with status draining", rec.Code, rec.Body)
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestSessions(t *testing.T) {
	s := newServer(t, nil)
	tests := []struct {
		path   string
		status int
		code   string
	}{
		{"/sessions/band-1", 200, ""},
		{"/sessions/unknown_2", 404, "SESSION_NOT_FOUND"},
		{"/sessions/" + strings.Repeat("a", 64), 404, "SESSION_NOT_FOUND"},
		{"/sessions/" + strings.Repeat("a", 65), 400, "INVALID_SESSION_ID"},
		{"/sessions/bad.id", 400, "INVALID_SESSION_ID"},
		{"/sessions/b%20d", 400, "INVALID_SESSION_ID"},
		{"/sessions/a/b", 400, "INVALID_SESSION_ID"},
		{"/sessions/", 400, "INVALID_SESSION_ID"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			rec := s.do("GET", tt.path)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %q", rec.Code, tt.status, rec.Body)
			}
			if tt.code == "" {
				if got := decode(t, rec); got["sessionId"] != "band-1" || got["tempoBpm"] != 120.0 {
					t.Errorf("state = %v, want the engine's state", got)
				}
				return
			}
			if got := errorCode(t, rec); got != tt.code {
				t.Errorf("error code = %q, want %q", got, tt.code)
			}
		})
	}
}

func TestSessionList(t *testing.T) {
	s := newServer(t, nil)
	rec := s.doFrom("127.0.0.1:5000", "GET", "/sessions")
	if rec.Code != 200 {
		t.Fatalf("status = %d; body %q", rec.Code, rec.Body)
	}
	got := decode(t, rec)
	list, _ := got["sessions"].([]any)
	if got["total"] != 1.0 || len(list) != 1 || list[0].(map[string]any)["sessionId"] != "band-1" {
		t.Errorf("GET /sessions = %v, want band-1's state and total 1", got)
	}
	if rec := s.do("POST", "/sessions"); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /sessions: status %d, want 405", rec.Code)
	}
}

func TestSessionListBounded(t *testing.T) {
	many := fakeSessions{}
	for i := range maxListedSessions + 5 {
		many[fmt.Sprintf("band-%04d", i)] = map[string]any{"sessionId": fmt.Sprintf("band-%04d", i)}
	}
	h := New(Options{Sessions: many, AdminToken: "t0ken-of-the-deployer"})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/sessions", nil)
	req.Header.Set("Authorization", "Bearer t0ken-of-the-deployer")
	h.ServeHTTP(rec, req)
	var got struct {
		Sessions []any `json:"sessions"`
		Total    int   `json:"total"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Sessions) != maxListedSessions || got.Total != maxListedSessions+5 {
		t.Errorf("listed %d of total %d, want %d of %d", len(got.Sessions), got.Total, maxListedSessions, maxListedSessions+5)
	}
}

// The list of sessions names every band's session id, which is all a
// stranger needs to join one: it is the deployer's, by token or from the
// machine itself.
func TestSessionListIsTheDeployers(t *testing.T) {
	const token = "t0ken-of-the-deployer"
	for _, tt := range []struct {
		name       string
		token      string
		trustProxy bool
		remote     string
		header     []string
		want       int
	}{
		{"no token, from elsewhere", "", false, "192.0.2.1:1234", nil, 401},
		{"no token, IPv6 from elsewhere", "", false, "[2001:db8::1]:1234", nil, 401},
		{"no token, from this machine", "", false, "127.0.0.1:5000", nil, 200},
		{"no token, IPv6 loopback", "", false, "[::1]:5000", nil, 200},
		{"no token, through a local proxy for a stranger", "", true, "127.0.0.1:5000", []string{"X-Forwarded-For", "203.0.113.9"}, 401},
		{"no token, a forged forward without a trusted proxy", "", false, "192.0.2.1:1234", []string{"X-Forwarded-For", "127.0.0.1"}, 401},
		{"token, none presented, even from this machine", token, false, "127.0.0.1:5000", nil, 401},
		{"token, a wrong one", token, false, "192.0.2.1:1234", []string{"Authorization", "Bearer guess"}, 401},
		{"token, the right one from elsewhere", token, false, "192.0.2.1:1234", []string{"Authorization", "Bearer " + token}, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, func(o *Options) { o.AdminToken, o.TrustProxy = tt.token, tt.trustProxy })
			rec := s.doFrom(tt.remote, "GET", "/sessions", tt.header...)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d; body %q", rec.Code, tt.want, rec.Body)
			}
			if tt.want == 401 {
				if got := errorCode(t, rec); got != "UNAUTHORIZED" {
					t.Errorf("error code %q, want UNAUTHORIZED", got)
				}
				if strings.Contains(rec.Body.String(), "band-1") {
					t.Error("a refused answer names a session")
				}
			}
		})
	}
	// One session's state stays public, as in the original: its id is
	// the credential.
	if rec := newServer(t, nil).do("GET", "/sessions/band-1"); rec.Code != 200 {
		t.Errorf("GET /sessions/band-1 from elsewhere: status %d, want 200", rec.Code)
	}
}

func TestMetricsNegotiation(t *testing.T) {
	s := newServer(t, nil)
	const scraper = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
	tests := []struct {
		name, target, accept string
		wantPrometheus       bool
	}{
		{"no Accept", "/metrics", "", false},
		{"curl", "/metrics", "*/*", false},
		{"browser", "/metrics", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", false},
		{"json", "/metrics", "application/json", false},
		{"json preferred over text", "/metrics", "application/json, text/plain;q=0.5", false},
		{"text/plain", "/metrics", "text/plain", true},
		{"text preferred over json", "/metrics", "text/plain, application/json;q=0.5", true},
		{"openmetrics", "/metrics", "application/openmetrics-text; version=1.0.0", true},
		{"prometheus scraper", "/metrics", scraper, true},
		{"query overrides Accept", "/metrics?format=prometheus", "application/json", true},
		{"query json overrides Accept", "/metrics?format=json", "text/plain", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := s.do("GET", tt.target, "Accept", tt.accept)
			if rec.Code != http.StatusOK {
				t.Fatalf("status = %d; body %q", rec.Code, rec.Body)
			}
			if tt.wantPrometheus {
				ct := rec.Header().Get("Content-Type")
				if !strings.HasPrefix(ct, "text/plain") && !strings.HasPrefix(ct, "application/openmetrics-text") {
					t.Fatalf("Content-Type = %q, want a Prometheus exposition", ct)
				}
				if !strings.Contains(rec.Body.String(), "bandsync_connections 7") {
					t.Errorf("exposition lacks the gatherer's metric: %q", rec.Body)
				}
				return
			}
			if got := decode(t, rec); got["connections"] != 7.0 || got["p95"] != 12.5 {
				t.Errorf("JSON = %v, want the monitor's snapshot", got)
			}
		})
	}

	if rec := s.do("GET", "/metrics?format=xml"); rec.Code != 400 || errorCode(t, rec) != "INVALID_QUERY" {
		t.Errorf("format=xml: status %d, want 400 INVALID_QUERY", rec.Code)
	}
}

func TestMetricsHistory(t *testing.T) {
	s := newServer(t, nil)
	rec := s.do("GET", "/metrics/history?since=1700000000000")
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d; body %q", rec.Code, rec.Body)
	}
	if got := mustJSON(decode(t, rec)["samples"]); got != `[{"at":1700000000000,"connections":3}]` {
		t.Errorf("samples = %s", got)
	}
	if want := time.UnixMilli(1700000000000); !s.monitor.since.Equal(want) {
		t.Errorf("History got since=%v, want %v", s.monitor.since, want)
	}

	s.do("GET", "/metrics/history")
	if !s.monitor.since.IsZero() {
		t.Errorf("without ?since History got %v, want the zero time (everything)", s.monitor.since)
	}

	for _, bad := range []string{"yesterday", "-1", "1.5"} {
		if rec := s.do("GET", "/metrics/history?since="+bad); rec.Code != 400 || errorCode(t, rec) != "INVALID_QUERY" {
			t.Errorf("since=%s: status %d, want 400 INVALID_QUERY", bad, rec.Code)
		}
	}

	s.monitor.historyErr = errors.New("redis down")
	if rec := s.do("GET", "/metrics/history"); rec.Code != 500 || errorCode(t, rec) != "INTERNAL" {
		t.Errorf("failing store: status %d, want 500 INTERNAL", rec.Code)
	}
	if !strings.Contains(s.logs.String(), "redis down") {
		t.Errorf("store failure not logged: %q", s.logs)
	}
}

func TestMetricsDisabled(t *testing.T) {
	s := newServer(t, func(o *Options) { o.Metrics = nil })
	for _, path := range []string{"/metrics", "/metrics?format=prometheus", "/metrics/history"} {
		if rec := s.do("GET", path); rec.Code != 404 || errorCode(t, rec) != "METRICS_DISABLED" {
			t.Errorf("%s: status %d, want 404 METRICS_DISABLED", path, rec.Code)
		}
	}
}

func TestUnencodableSnapshotIs500(t *testing.T) {
	s := newServer(t, nil)
	s.monitor.snapshot.P95 = math.NaN()
	rec := s.do("GET", "/metrics")
	if rec.Code != 500 || errorCode(t, rec) != "INTERNAL" {
		t.Errorf("status %d body %q, want 500 INTERNAL", rec.Code, rec.Body)
	}
}

func TestRouting(t *testing.T) {
	static := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("web app")) })
	tests := []struct {
		name, method, path string
		static             bool
		status             int
		code               string
	}{
		{"unknown path is JSON 404", "GET", "/nope", false, 404, "NOT_FOUND"},
		{"root without web app", "GET", "/", false, 404, "NOT_FOUND"},
		{"socket.io reaches its handler", "GET", "/socket.io/?EIO=4&transport=websocket", false, http.StatusTeapot, ""},
		{"wrong method", "POST", "/health", false, 405, "METHOD_NOT_ALLOWED"},
		{"wrong method on sessions", "DELETE", "/sessions/band-1", false, 405, "METHOD_NOT_ALLOWED"},
		{"HEAD health", "HEAD", "/health", false, 200, ""},
		{"web app at root", "GET", "/", true, 200, ""},
		{"web app serves unknown paths", "GET", "/songs/1", true, 200, ""},
		{"API still wins over web app", "GET", "/sessions/x!", true, 400, "INVALID_SESSION_ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, func(o *Options) {
				if tt.static {
					o.Static = static
				}
			})
			rec := s.do(tt.method, tt.path)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %q", rec.Code, tt.status, rec.Body)
			}
			if tt.code != "" {
				if got := errorCode(t, rec); got != tt.code {
					t.Errorf("error code = %q, want %q", got, tt.code)
				}
			}
			if tt.static && tt.code == "" && rec.Body.String() != "web app" {
				t.Errorf("body = %q, want the web app", rec.Body)
			}
		})
	}
	if rec := newServer(t, nil).do("POST", "/health"); rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("405 Allow = %q, want GET, HEAD", rec.Header().Get("Allow"))
	}
}

func TestSecurityHeaders(t *testing.T) {
	want := map[string]string{
		"Content-Security-Policy":           "default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';frame-ancestors 'self';img-src 'self' data:;object-src 'none';script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline'",
		"Cross-Origin-Opener-Policy":        "same-origin",
		"Cross-Origin-Resource-Policy":      "same-origin",
		"Origin-Agent-Cluster":              "?1",
		"Referrer-Policy":                   "no-referrer",
		"Strict-Transport-Security":         "max-age=15552000; includeSubDomains",
		"X-Content-Type-Options":            "nosniff",
		"X-Dns-Prefetch-Control":            "off",
		"X-Download-Options":                "noopen",
		"X-Frame-Options":                   "SAMEORIGIN",
		"X-Permitted-Cross-Domain-Policies": "none",
		"X-Xss-Protection":                  "0",
	}
	s := newServer(t, func(o *Options) { o.RateLimitMax, o.RateLimitWindow = 1, time.Minute })
	// Every kind of response: success, error, Socket.IO, rate-limited.
	for _, path := range []string{"/health", "/nope", "/socket.io/", "/health"} {
		rec := s.do("GET", path)
		for name, value := range want {
			if got := rec.Header().Get(name); got != value {
				t.Errorf("GET %s (%d): %s = %q, want %q", path, rec.Code, name, got, value)
			}
		}
		if got := rec.Header().Get("X-Powered-By"); got != "" {
			t.Errorf("GET %s: X-Powered-By = %q, want none", path, got)
		}
	}
}

// Over HTTPS the CSP is Helmet's to the letter; over plain HTTP (a band's
// LAN) it leaves out upgrade-insecure-requests, which would make browsers
// load the web app's assets from an https:// that does not exist.
func TestCSPUpgradesOnlyOverHTTPS(t *testing.T) {
	const helmet = "default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';frame-ancestors 'self';img-src 'self' data:;object-src 'none';script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline';upgrade-insecure-requests"
	s := newServer(t, nil)
	req := httptest.NewRequest("GET", "https://band.example/health", nil)
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	if got := rec.Header().Get("Content-Security-Policy"); got != helmet {
		t.Errorf("over HTTPS CSP = %q, want Helmet's %q", got, helmet)
	}
	if got := s.do("GET", "/health", "X-Forwarded-Proto", "https").Header().Get("Content-Security-Policy"); strings.Contains(got, "upgrade-insecure-requests") {
		t.Error("an untrusted X-Forwarded-Proto turned on upgrade-insecure-requests")
	}
	p := newServer(t, func(o *Options) { o.TrustProxy = true })
	if got := p.do("GET", "/health", "X-Forwarded-Proto", "https").Header().Get("Content-Security-Policy"); got != helmet {
		t.Errorf("behind a trusted proxy over HTTPS CSP = %q, want Helmet's", got)
	}
}

func TestCORS(t *testing.T) {
	t.Run("any origin", func(t *testing.T) {
		s := newServer(t, nil)
		rec := s.do("GET", "/health", "Origin", "https://anywhere.example")
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "*" {
			t.Errorf("Access-Control-Allow-Origin = %q, want *", got)
		}
	})
	t.Run("list", func(t *testing.T) {
		s := newServer(t, func(o *Options) { o.CORSOrigin = "https://band.example.com,http://localhost:8081" })
		rec := s.do("GET", "/health", "Origin", "http://localhost:8081")
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "http://localhost:8081" {
			t.Errorf("listed origin: Access-Control-Allow-Origin = %q, want it echoed", got)
		}
		if !strings.Contains(strings.Join(rec.Header().Values("Vary"), ","), "Origin") {
			t.Errorf("Vary = %q, want Origin (the answer depends on it)", rec.Header().Values("Vary"))
		}
		rec = s.do("GET", "/health", "Origin", "https://evil.example")
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("unlisted origin: Access-Control-Allow-Origin = %q, want none", got)
		}
	})
	t.Run("preflight", func(t *testing.T) {
		s := newServer(t, func(o *Options) { o.CORSOrigin = "https://band.example.com" })
		rec := s.do("OPTIONS", "/sessions/band-1",
			"Origin", "https://band.example.com",
			"Access-Control-Request-Method", "GET",
			"Access-Control-Request-Headers", "x-client-version")
		if rec.Code != http.StatusNoContent {
			t.Errorf("preflight status = %d, want 204", rec.Code)
		}
		h := rec.Header()
		if h.Get("Access-Control-Allow-Origin") != "https://band.example.com" ||
			!strings.Contains(h.Get("Access-Control-Allow-Methods"), "GET") ||
			!strings.EqualFold(h.Get("Access-Control-Allow-Headers"), "x-client-version") {
			t.Errorf("preflight headers = %v", h)
		}
		rec = s.do("OPTIONS", "/health", "Origin", "https://evil.example", "Access-Control-Request-Method", "GET")
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("preflight from unlisted origin allowed: %q", got)
		}
	})
}

func TestOriginAllowed(t *testing.T) {
	tests := []struct {
		allowed, origin string
		want            bool
	}{
		{"*", "https://any.example", true},
		{"", "https://any.example", true},
		{"https://a.example", "", true}, // native app: no Origin header
		{"https://a.example", "https://a.example", true},
		{"https://a.example, http://localhost:8081", "http://localhost:8081", true},
		{"https://a.example", "HTTPS://A.EXAMPLE", true},
		{"https://a.example", "https://b.example", false},
		{"https://a.example", "http://a.example", false},
		{"https://a.example", "https://a.example:8443", false},
		{"https://a.example", "https://a.example.evil", false},
		{"https://a.example", "null", false},
	}
	for _, tt := range tests {
		if got := OriginAllowed(tt.allowed, tt.origin); got != tt.want {
			t.Errorf("OriginAllowed(%q, %q) = %v, want %v", tt.allowed, tt.origin, got, tt.want)
		}
	}
}

func TestPanicRecovery(t *testing.T) {
	t.Run("before the response", func(t *testing.T) {
		s := newServer(t, func(o *Options) {
			o.Static = http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })
		})
		rec := s.do("GET", "/")
		if rec.Code != 500 || errorCode(t, rec) != "INTERNAL" {
			t.Errorf("status %d body %q, want 500 INTERNAL", rec.Code, rec.Body)
		}
		if logs := s.logs.String(); !strings.Contains(logs, "panic") || !strings.Contains(logs, "boom") {
			t.Errorf("panic not logged: %q", logs)
		}
	})
	t.Run("after the response started", func(t *testing.T) {
		s := newServer(t, func(o *Options) {
			o.Static = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte("partial"))
				panic("late boom")
			})
		})
		rec := s.do("GET", "/")
		if rec.Code != 200 || rec.Body.String() != "partial" {
			t.Errorf("got %d %q, want the started response left alone", rec.Code, rec.Body)
		}
		if !strings.Contains(s.logs.String(), "late boom") {
			t.Errorf("panic not logged: %q", s.logs)
		}
	})
}

// TestWebSocketUpgradeThroughMiddleware upgrades a real connection with
// gobwas/ws, the library the Socket.IO server uses, through every middleware.
func TestWebSocketUpgradeThroughMiddleware(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			t.Errorf("upgrade through middleware: %v", err)
			return
		}
		defer conn.Close()
		msg, err := wsutil.ReadClientText(conn)
		if err == nil {
			err = wsutil.WriteServerText(conn, msg)
		}
		if err != nil {
			t.Errorf("server side: %v", err)
		}
	})
	srv := httptest.NewServer(New(Options{SocketIO: echo, RateLimitMax: 1, RateLimitWindow: time.Hour}))
	defer srv.Close()

	// Twice, to show /socket.io/ does not count against a limit of one.
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, _, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/socket.io/?EIO=4&transport=websocket")
		cancel()
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		if err := wsutil.WriteClientText(conn, []byte("40")); err != nil {
			t.Fatal(err)
		}
		got, err := wsutil.ReadServerText(conn)
		if err != nil || string(got) != "40" {
			t.Fatalf("echo = %q, %v; want 40", got, err)
		}
		conn.Close()
	}
}

func TestRateLimit(t *testing.T) {
	clock := time.Unix(1_700_000_000, 0)
	s := newServer(t, func(o *Options) {
		o.RateLimitMax, o.RateLimitWindow = 3, time.Minute
		o.now = func() time.Time { return clock }
	})

	get := func(ip, path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = ip + ":40000"
		rec := httptest.NewRecorder()
		s.h.ServeHTTP(rec, req)
		return rec
	}

	for i := range 3 {
		rec := get("192.0.2.1", "/health")
		if rec.Code != 200 {
			t.Fatalf("request %d: status %d, want 200", i+1, rec.Code)
		}
		if got, want := rec.Header().Get("RateLimit-Remaining"), strconv.Itoa(2-i); got != want {
			t.Errorf("request %d: RateLimit-Remaining = %q, want %s", i+1, got, want)
		}
		if got := rec.Header().Get("RateLimit-Limit"); got != "3" {
			t.Errorf("RateLimit-Limit = %q, want 3", got)
		}
	}

	rec := get("192.0.2.1", "/sessions/band-1")
	if rec.Code != http.StatusTooManyRequests || errorCode(t, rec) != "RATE_LIMITED" {
		t.Fatalf("4th request: status %d body %q, want 429 RATE_LIMITED", rec.Code, rec.Body)
	}
	// One token comes back every 20 s (3 per minute).
	if got := rec.Header().Get("Retry-After"); got != "20" {
		t.Errorf("Retry-After = %q, want 20", got)
	}
	if got := rec.Header().Get("RateLimit-Remaining"); got != "0" {
		t.Errorf("RateLimit-Remaining = %q, want 0", got)
	}
	if got := rec.Header().Get("RateLimit-Reset"); got != "60" {
		t.Errorf("RateLimit-Reset = %q, want 60 (until the bucket is full)", got)
	}

	if rec := get("192.0.2.2", "/health"); rec.Code != 200 {
		t.Errorf("another client was limited too: %d", rec.Code)
	}
	if rec := get("192.0.2.1", "/socket.io/"); rec.Code != http.StatusTeapot {
		t.Errorf("/socket.io/ was rate limited: %d", rec.Code)
	}

	clock = clock.Add(20 * time.Second)
	if rec := get("192.0.2.1", "/health"); rec.Code != 200 {
		t.Errorf("after a refill interval: status %d, want 200", rec.Code)
	}
	if rec := get("192.0.2.1", "/health"); rec.Code != 429 {
		t.Errorf("refill gave more than one token: status %d, want 429", rec.Code)
	}
}

func TestRateLimitClientKey(t *testing.T) {
	type from struct{ remote, xff string }
	tests := []struct {
		name  string
		trust bool
		a, b  from
		same  bool
	}{
		{"IPv4: port ignored", false, from{"192.0.2.1:1", ""}, from{"192.0.2.1:2", ""}, true},
		{"IPv4: other address", false, from{"192.0.2.1:1", ""}, from{"192.0.2.9:1", ""}, false},
		{"IPv4-mapped IPv6 is IPv4", false, from{"192.0.2.1:1", ""}, from{"[::ffff:192.0.2.1]:1", ""}, true},
		{"IPv6: one /64 shares", false, from{"[2001:db8:1:2::1]:1", ""}, from{"[2001:db8:1:2:ffff::9]:1", ""}, true},
		{"IPv6: next /64 does not", false, from{"[2001:db8:1:2::1]:1", ""}, from{"[2001:db8:1:3::1]:1", ""}, false},
		{"X-Forwarded-For ignored by default", false, from{"192.0.2.1:1", "198.51.100.7"}, from{"192.0.2.1:1", "198.51.100.8"}, true},
		{"trusted proxy: clients told apart", true, from{"10.0.0.1:1", "198.51.100.7"}, from{"10.0.0.1:1", "198.51.100.8"}, false},
		{"trusted proxy: only the last hop counts", true, from{"10.0.0.1:1", "198.51.100.7"}, from{"10.0.0.1:1", "203.0.113.5, 198.51.100.7"}, true},
		{"trusted proxy, no header: remote address", true, from{"10.0.0.1:1", ""}, from{"10.0.0.2:1", ""}, false},
	}
	key := func(f from, trust bool) string {
		req := httptest.NewRequest("GET", "/health", nil)
		req.RemoteAddr = f.remote
		if f.xff != "" {
			req.Header.Set("X-Forwarded-For", f.xff)
		}
		return clientKey(req, trust)
	}
	for _, tt := range tests {
		ka, kb := key(tt.a, tt.trust), key(tt.b, tt.trust)
		if (ka == kb) != tt.same {
			t.Errorf("%s: keys %q and %q, want same=%v", tt.name, ka, kb, tt.same)
		}
	}
}

func TestRateLimitForgetsIdleClients(t *testing.T) {
	clock := time.Unix(1_700_000_000, 0)
	l := newRateLimiter(2, time.Minute, false)
	l.now = func() time.Time { return clock }
	l.maxClients = 3

	for i := range 3 {
		l.take("192.0.2." + strconv.Itoa(i))
	}
	// The table is full: a newcomer shares the overflow bucket rather than
	// growing it.
	l.take("192.0.2.100")
	l.take("192.0.2.101")
	if d := l.take("192.0.2.102"); d.allowed {
		t.Error("third newcomer in a full table was allowed; overflow clients should share one bucket of 2")
	}
	if n := len(l.clients); n > l.maxClients+1 {
		t.Errorf("table grew to %d entries, cap is %d plus the overflow bucket", n, l.maxClients)
	}

	clock = clock.Add(time.Minute)
	if d := l.take("192.0.2.200"); !d.allowed {
		t.Error("after everyone idled a window, a new client was refused")
	}
	if n := len(l.clients); n != 1 {
		t.Errorf("after a window of idleness the table holds %d entries, want only the new client", n)
	}
}

// TestHijackByTypeAssertion covers WebSocket code that type-asserts
// http.Hijacker instead of going through http.ResponseController.
func TestHijackByTypeAssertion(t *testing.T) {
	raw := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hj, ok := w.(http.Hijacker)
		if !ok {
			http.Error(w, "not a Hijacker", http.StatusInternalServerError)
			return
		}
		conn, buf, err := hj.Hijack()
		if err != nil {
			t.Errorf("Hijack: %v", err)
			return
		}
		defer conn.Close()
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
		_ = buf.Flush()
	})
	srv := httptest.NewServer(New(Options{SocketIO: raw}))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/socket.io/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "hijacked" {
		t.Errorf("got %d %q, want the hijacked connection's own response", resp.StatusCode, body)
	}
}
