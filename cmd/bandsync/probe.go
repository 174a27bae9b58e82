package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/bandsync/bandsync/internal/config"
)

// versionString names the build. A plain `go build` has no -ldflags, so
// the commit falls back to what the Go toolchain stamped from git.
func versionString() string {
	commit, date := commit, date
	if info, ok := debug.ReadBuildInfo(); ok && commit == "unknown" {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.time":
				date = s.Value
			}
		}
	}
	return fmt.Sprintf("bandsync %s (commit %s, built %s, %s %s/%s)",
		version, commit, date, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// probe asks the server that cfg describes, on this host, whether it is
// ready. It goes to loopback whatever HOST says: HOST=0.0.0.0 is where the
// server listens, not an address to dial, and the probe runs beside it.
func probe(cfg config.Config, timeout time.Duration) error {
	host := "127.0.0.1"
	if ip := net.ParseIP(cfg.Host); ip != nil && !ip.IsUnspecified() {
		host = cfg.Host
	}
	url := "http://" + net.JoinHostPort(host, strconv.Itoa(cfg.Port)) + "/readyz"
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s %s", url, resp.Status, body)
	}
	return nil
}
