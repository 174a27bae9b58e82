// Package lb is a small round-robin HTTP and WebSocket load balancer for
// BandSync's multi-instance stack (cmd/bandsync-lb). It exists because no
// base image can be pulled where the stack is built and tested, so nginx or
// HAProxy cannot be used there; in production, put any load balancer that
// passes WebSocket upgrades in front of the instances (docs/deploy.md).
//
// No sticky sessions: BandSync instances share state through Redis, so any
// instance can take any request. Each backend's GET /readyz is polled; an
// instance that fails it (draining, dead) gets no new requests, and one that
// refuses a connection is skipped for the request at hand as well.
package lb

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Balancer.
type Options struct {
	Backends      []*url.URL
	CheckInterval time.Duration // how often /readyz is polled (1 s)
	CheckTimeout  time.Duration // per poll (1 s)
	Logger        *slog.Logger
}

// Balancer is an http.Handler that spreads requests over the ready backends.
type Balancer struct {
	opts     Options
	log      *slog.Logger
	backends []*backend
	next     atomic.Uint64
	client   *http.Client
}

type backend struct {
	url   *url.URL
	proxy *httputil.ReverseProxy
	ready atomic.Bool
}

// New returns a Balancer; every backend counts as ready until its first
// check says otherwise. Call Run to start the checks.
func New(opts Options) (*Balancer, error) {
	if len(opts.Backends) == 0 {
		return nil, errors.New("lb: no backends")
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = time.Second
	}
	if opts.CheckTimeout <= 0 {
		opts.CheckTimeout = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Balancer{opts: opts, log: opts.Logger, client: &http.Client{Timeout: opts.CheckTimeout}}
	for _, u := range opts.Backends {
		be := &backend{url: u}
		be.ready.Store(true)
		p := httputil.NewSingleHostReverseProxy(u)
		p.ErrorHandler = b.proxyError(be)
		// WebSocket upgrades are passed through by ReverseProxy itself; the
		// flush interval keeps long-polling responses from being buffered.
		p.FlushInterval = -1
		be.proxy = p
		b.backends = append(b.backends, be)
	}
	return b, nil
}

// retryKey carries a *bool in a proxied request's context: the error
// handler sets it when the backend refused the connection, before anything
// was written to the client, so ServeHTTP may try the next backend.
type retryKey struct{}

func (b *Balancer) proxyError(be *backend) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		if failed, ok := r.Context().Value(retryKey{}).(*bool); ok && isDialError(err) {
			// Nothing reached the client yet: let ServeHTTP try the next backend.
			*failed = true
			if be.ready.Swap(false) {
				b.log.Warn("backend down", "backend", be.url.String(), "err", err)
			}
			return
		}
		b.log.Warn("proxy error", "backend", be.url.String(), "path", r.URL.Path, "err", err)
		w.WriteHeader(http.StatusBadGateway)
	}
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// ServeHTTP forwards r to the next ready backend in turn, and to the one
// after it when a backend refuses the connection.
func (b *Balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := len(b.backends)
	start := int(b.next.Add(1) % uint64(n))
	for i := range n {
		be := b.backends[(start+i)%n]
		if !be.ready.Load() {
			continue
		}
		failed := false
		be.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), retryKey{}, &failed)))
		if !failed {
			return
		}
	}
	http.Error(w, "no backend is ready", http.StatusServiceUnavailable)
}

// Run polls every backend's /readyz until ctx ends.
func (b *Balancer) Run(ctx context.Context) {
	t := time.NewTicker(b.opts.CheckInterval)
	defer t.Stop()
	for {
		var wg sync.WaitGroup
		for _, be := range b.backends {
			wg.Add(1)
			go func() { defer wg.Done(); b.check(ctx, be) }()
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (b *Balancer) check(ctx context.Context, be *backend) {
	u := be.url.JoinPath("/readyz")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return
	}
	ok := false
	if resp, err := b.client.Do(req); err == nil {
		ok = resp.StatusCode == http.StatusOK
		resp.Body.Close()
	}
	if ctx.Err() != nil {
		return
	}
	if was := be.ready.Swap(ok); was != ok {
		b.log.Info("backend readiness changed", "backend", be.url.String(), "ready", ok)
	}
}

// Ready reports how many backends are ready, for the balancer's own /lbz.
func (b *Balancer) Ready() int {
	n := 0
	for _, be := range b.backends {
		if be.ready.Load() {
			n++
		}
	}
	return n
}
