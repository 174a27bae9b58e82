package httpapi

import (
	"errors"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestProbes(t *testing.T) {
	var draining atomic.Bool
	s := newServer(t, func(o *Options) {
		o.Ready = func() error {
			if draining.Load() {
				return errors.New("draining")
			}
			return nil
		}
	})

	for _, path := range []string{"/livez", "/readyz"} {
		rec := s.do("GET", path)
		if rec.Code != 200 {
			t.Fatalf("GET %s = %d %q, want 200", path, rec.Code, rec.Body)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s lacks the security headers", path)
		}
	}

	draining.Store(true)
	rec := s.do("GET", "/readyz")
	if rec.Code != 503 {
		t.Fatalf("GET /readyz while draining = %d, want 503", rec.Code)
	}
	if got := decode(t, rec)["reason"]; got != "draining" {
		t.Errorf("reason = %v, want draining", got)
	}
	// Liveness is about the process only: a draining or degraded
	// instance must not be restarted by its orchestrator.
	if rec := s.do("GET", "/livez"); rec.Code != 200 {
		t.Errorf("GET /livez while draining = %d, want 200", rec.Code)
	}
	if rec := s.do("POST", "/readyz"); rec.Code == 200 || rec.Code == 503 {
		t.Errorf("POST /readyz = %d, want it refused like any unknown route", rec.Code)
	}
}

func TestProbesBypassRateLimit(t *testing.T) {
	clock := time.Unix(1_700_000_000, 0)
	s := newServer(t, func(o *Options) {
		o.RateLimitMax, o.RateLimitWindow = 1, time.Hour
		o.now = func() time.Time { return clock }
	})
	get := func(path string) int {
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = "192.0.2.7:40000"
		rec := httptest.NewRecorder()
		s.h.ServeHTTP(rec, req)
		return rec.Code
	}
	get("/health")
	if code := get("/health"); code != 429 {
		t.Fatalf("second /health = %d, want 429 (the limit is 1 per hour)", code)
	}
	for range 5 {
		if code := get("/readyz"); code != 200 {
			t.Fatalf("/readyz from a rate-limited address = %d, want 200", code)
		}
		if code := get("/livez"); code != 200 {
			t.Fatalf("/livez from a rate-limited address = %d, want 200", code)
		}
	}
}
