// Package redistest runs private, throw-away redis-server processes for
// tests: on a free port of 127.0.0.1, without persistence, never the
// machine's shared Redis. When redis-server is not installed the test is
// skipped with a loud message, or fails when CI is set.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one private redis-server.
type Server struct {
	Port int
	dir  string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://127.0.0.1:" + strconv.Itoa(s.Port) + "/0" }

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// Start starts a private redis-server and stops it when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := start(tb.TempDir())
	if err != nil {
		Unavailable(tb, err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Unavailable skips the test, or fails it when CI is set.
func Unavailable(tb testing.TB, err error) {
	tb.Helper()
	msg := fmt.Sprintf("SKIPPED: this test needs a private redis-server and none could be started: %v "+
		"(install redis-server; with CI set this is a failure)", err)
	if os.Getenv("CI") != "" {
		tb.Fatal(msg)
	}
	fmt.Fprintln(os.Stderr, "!!! "+msg)
	tb.Skip(msg)
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
)

// Shared returns a redis-server for the whole test binary: the one named
// by BANDSYNC_TEST_REDIS_URL (a private server scripts/test.sh started),
// or one started on first use and stopped by Cleanup (call it from
// TestMain after m.Run). Tests sharing it must use their own key prefix.
func Shared(tb testing.TB) string {
	tb.Helper()
	if u := os.Getenv("BANDSYNC_TEST_REDIS_URL"); u != "" {
		return u
	}
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bandsync-redistest-")
		if err != nil {
			sharedErr = err
			return
		}
		shared, sharedErr = start(dir)
	})
	if sharedErr != nil {
		Unavailable(tb, sharedErr)
	}
	return shared.URL()
}

// Cleanup stops the server Shared started, if any.
func Cleanup() {
	if shared != nil {
		shared.Stop()
		_ = os.RemoveAll(shared.dir)
	}
}

func start(dir string) (*Server, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, err
	}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{Port: port, dir: dir}
		if lastErr = s.Start(); lastErr == nil {
			return s, nil
		}
	}
	return nil, lastErr
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start (re)starts the server on its port, empty, and waits until it
// answers.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(s.Port),
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis-"+strconv.Itoa(s.Port)+".log"))
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			s.cmd = cmd
			return nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return fmt.Errorf("redis-server on port %d did not answer: %v (log: %s)", s.Port, err, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (its data is gone: nothing is persisted).
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

func (s *Server) logTail() string {
	f, err := os.Open(filepath.Join(s.dir, "redis-"+strconv.Itoa(s.Port)+".log"))
	if err != nil {
		return "(no log)"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 5 {
			lines = lines[1:]
		}
	}
	return fmt.Sprint(lines)
}
