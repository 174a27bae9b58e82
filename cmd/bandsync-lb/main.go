// Command bandsync-lb is the round-robin load balancer of BandSync's
// compose stack (deploy/compose): HTTP and WebSocket to whichever instance
// is ready, no sticky sessions. It is built here because the stack must come
// up without pulling images; any WebSocket-capable balancer does the same job
// in production (docs/deploy.md).
//
//	bandsync-lb -listen :8080 -backends http://bandsync-1:3001,http://bandsync-2:3001
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/bandsync/bandsync/internal/lb"
)

func main() {
	listen := flag.String("listen", envOr("LB_LISTEN", ":8080"), "address to listen on (LB_LISTEN)")
	backends := flag.String("backends", os.Getenv("LB_BACKENDS"), "comma-separated backend URLs (LB_BACKENDS)")
	interval := flag.Duration("check-interval", time.Second, "how often each backend's /readyz is polled")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))

	var urls []*url.URL
	for _, s := range strings.Split(*backends, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			fmt.Fprintf(os.Stderr, "bandsync-lb: backend %q is not an http(s)://host:port URL\n", s)
			os.Exit(2)
		}
		urls = append(urls, u)
	}
	b, err := lb.New(lb.Options{Backends: urls, CheckInterval: *interval, Logger: log})
	if err != nil {
		fmt.Fprintf(os.Stderr, "bandsync-lb: %v (set -backends or LB_BACKENDS)\n", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go b.Run(ctx)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /lbz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d of %d backends ready\n", b.Ready(), len(urls))
	})
	mux.Handle("/", b)
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("bandsync-lb listening", "addr", *listen, "backends", *backends)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("bandsync-lb stopped", "err", err)
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
