package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/bandsync/bandsync/internal/precision"
)

// redisFault is a fault proxy between the server under test and its
// Redis: during the measurement window it adds a delay to everything that
// crosses it for a while, to show what a slow Redis does to the band
// (issue 11: ticks must not wait on it, and the seeks issued meanwhile
// must still all arrive, in order).
type redisFault struct {
	net  *precision.Network
	link *precision.Link
	cfg  config
}

// startRedisFault opens the proxy and waits until the server reports that
// it reaches Redis through it.
func startRedisFault(ctx context.Context, cfg config) (*redisFault, error) {
	n := precision.NewNetwork(1)
	l, err := n.LinkAt("redis", cfg.RedisProxy, cfg.RedisUpstream)
	if err != nil {
		return nil, fmt.Errorf("-redis-proxy: %w", err)
	}
	r := &redisFault{net: n, link: l, cfg: cfg}
	fmt.Fprintf(os.Stderr, "bandsync-bench: fault proxy on %s -> %s; waiting for %s to report Redis mode\n", l.Addr(), cfg.RedisUpstream, cfg.URLs[0])
	deadline := time.Now().Add(30 * time.Second)
	for {
		mode, err := healthMode(ctx, cfg.URLs[0])
		if err == nil && mode == "redis" {
			return r, nil
		}
		if time.Now().After(deadline) {
			r.close()
			return nil, fmt.Errorf("-redis-proxy: %s did not report Redis mode within 30 s (last: %q, %v); start it with REDIS_URL=redis://%s", cfg.URLs[0], mode, err, cfg.RedisProxy)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			r.close()
			return nil, err
		}
	}
}

// healthMode reads the store mode from GET /health: "redis" once the
// server reaches Redis.
func healthMode(ctx context.Context, base string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/health", nil)
	if err != nil {
		return "", err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	var h struct {
		Redis struct {
			Connected bool   `json:"connected"`
			Mode      string `json:"mode"`
		} `json:"redis"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&h); err != nil {
		return "", err
	}
	if !h.Redis.Connected {
		return h.Redis.Mode + " (not connected)", nil
	}
	return h.Redis.Mode, nil
}

// during runs the fault in the background from now: clean for
// RedisDelayAfter, Redis's replies RedisDelay late for RedisDelayFor, clean
// again. The returned func ends it early (and waits for the link to be
// clean). With RedisDelay 0 the link stays clean: the undisturbed run
// through the same path.
func (r *redisFault) during(ctx context.Context) (stop func()) {
	if r.cfg.RedisDelay == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if sleep(ctx, r.cfg.RedisDelayAfter) != nil {
			return
		}
		d := precision.Dist{MeanMs: float64(r.cfg.RedisDelay) / float64(time.Millisecond)}
		if err := r.link.SetDelay(precision.Dist{}, d); err != nil {
			fmt.Fprintln(os.Stderr, "bandsync-bench: -redis-delay:", err)
			return
		}
		_ = sleep(ctx, r.cfg.RedisDelayFor)
		if err := r.link.SetDelay(precision.Dist{}, precision.Dist{}); err != nil {
			fmt.Fprintln(os.Stderr, "bandsync-bench: -redis-delay:", err)
		}
	}()
	return func() { cancel(); <-done }
}

func (r *redisFault) String() string {
	if r.cfg.RedisDelay == 0 {
		return "Redis through the fault proxy, undisturbed"
	}
	return fmt.Sprintf("Redis answering %v late from %v to %v of the window", r.cfg.RedisDelay, r.cfg.RedisDelayAfter, r.cfg.RedisDelayAfter+r.cfg.RedisDelayFor)
}

func (r *redisFault) close() { r.link.Close() }
