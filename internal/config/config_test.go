package config

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/joho/godotenv"
)

func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func mustParse(t *testing.T, kv ...string) Config {
	t.Helper()
	c, err := Parse(env(kv...))
	if err != nil {
		t.Fatalf("Parse(%q): %v", kv, err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	c := mustParse(t)
	checks := []struct {
		name      string
		got, want any
	}{
		{"PORT", c.Port, 3001},
		{"CORS_ORIGIN", c.CORSOrigin, "*"},
		{"LOG_LEVEL", c.LogLevel, "info"},
		{"REDIS_PORT", c.RedisPort, 6379},
		{"REDIS_KEY_PREFIX", c.RedisKeyPrefix, "bandsync:"},
		{"SYNC_TARGET_LATENCY", c.SyncTargetLatency, 50 * time.Millisecond},
		{"SCROLL_TICK_INTERVAL", c.ScrollTickInterval, 16 * time.Millisecond},
		{"MAX_EVENT_BATCH_SIZE", c.MaxEventBatchSize, 100},
		{"LEADER_GRACE_MS", c.LeaderGrace, 5 * time.Second},
		{"LEADER_POLICY", c.LeaderPolicy, "strict"},
		{"MAX_SESSION_MEMBERS", c.MaxSessionMembers, 50},
		{"MAX_SESSIONS", c.MaxSessions, 10000},
		{"SESSION_IDLE_TIMEOUT_MS", c.SessionIdleTimeout, time.Hour},
		{"SESSION_TTL", c.SessionTTL, 24 * time.Hour},
		{"HEARTBEAT_INTERVAL", c.HeartbeatInterval, 30 * time.Second},
		{"SOCKET_PING_INTERVAL", c.PingInterval, 2500 * time.Millisecond},
		{"SOCKET_PING_TIMEOUT", c.PingTimeout, 5 * time.Second},
		{"SOCKET_MAX_BUFFER_SIZE", c.MaxPayload, 1000000},
		{"RECOVERY_WINDOW_MS", c.RecoveryWindow, 2 * time.Minute},
		{"SOCKET_WRITE_QUEUE", c.WriteQueueSize, 256},
		{"SOCKET_COMPRESSION_THRESHOLD", c.CompressionLimit, 1024},
		{"RATE_LIMIT_WINDOW_MS", c.RateLimitWindow, time.Second},
		{"RATE_LIMIT_MAX_REQUESTS", c.RateLimitMaxRequests, 100},
		{"RATE_LIMIT_MAX_VIOLATIONS", c.RateLimitMaxViolations, 10},
		{"HTTP_RATE_LIMIT_WINDOW_MS", c.HTTPRateLimitWindow, time.Minute},
		{"HTTP_RATE_LIMIT_MAX_REQUESTS", c.HTTPRateLimitMaxRequests, 600},
		{"ENABLE_METRICS", c.EnableMetrics, true},
		{"METRICS_INTERVAL", c.MetricsInterval, 10 * time.Second},
		{"METRICS_RETENTION", c.MetricsRetention, 24 * time.Hour},
		{"SHUTDOWN_TIMEOUT_MS", c.ShutdownTimeout, 10 * time.Second},
		{"TRUST_PROXY", c.TrustProxy, false},
		{"RedisConfigured", c.RedisConfigured(), false},
		{"Production", c.Production(), false},
		{"Addr", c.Addr(), ":3001"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s default = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if c.InstanceID == "" {
		t.Error("INSTANCE_ID default is empty, want hostname-pid")
	}
}

func TestValidValues(t *testing.T) {
	tests := []struct {
		name, value string
		got         func(Config) any
		want        any
	}{
		{"PORT", "0", func(c Config) any { return c.Port }, 0},
		{"PORT", " 8080 ", func(c Config) any { return c.Port }, 8080},
		{"PORT", "", func(c Config) any { return c.Port }, 3001}, // empty = unset
		{"HOST", "127.0.0.1", func(c Config) any { return c.Addr() }, "127.0.0.1:3001"},
		{"LOG_LEVEL", "DEBUG", func(c Config) any { return c.LogLevel }, "debug"},
		{"LEADER_POLICY", "open", func(c Config) any { return c.LeaderPolicy }, "open"},
		{"SCROLL_TICK_INTERVAL", "1000", func(c Config) any { return c.ScrollTickInterval }, time.Second},
		{"SESSION_TTL", "60", func(c Config) any { return c.SessionTTL }, time.Minute}, // seconds, not ms
		{"HEARTBEAT_INTERVAL", "0", func(c Config) any { return c.HeartbeatInterval }, time.Duration(0)},
		{"SOCKET_MAX_BUFFER_SIZE", "1024", func(c Config) any { return c.MaxPayload }, 1024},
		{"SOCKET_MAX_BUFFER_SIZE", "104857600", func(c Config) any { return c.MaxPayload }, 104857600},
		{"RATE_LIMIT_MAX_VIOLATIONS", "0", func(c Config) any { return c.RateLimitMaxViolations }, 0},
		{"MAX_SESSION_MEMBERS", "10000", func(c Config) any { return c.MaxSessionMembers }, 10000},
		{"ENABLE_METRICS", "0", func(c Config) any { return c.EnableMetrics }, false},
		{"ENABLE_METRICS", "FALSE", func(c Config) any { return c.EnableMetrics }, false},
		{"ENABLE_METRICS", "1", func(c Config) any { return c.EnableMetrics }, true},
		{"TRUST_PROXY", "true", func(c Config) any { return c.TrustProxy }, true},
		{"CORS_ORIGIN", "*", func(c Config) any { return c.CORSOrigin }, "*"},
		{"ADMIN_TOKEN", " 9f2c1e7a-band-admin ", func(c Config) any { return c.AdminToken }, "9f2c1e7a-band-admin"},
		{"CORS_ORIGIN", "https://a.example.com, http://localhost:8081",
			func(c Config) any { return c.CORSOrigin }, "https://a.example.com,http://localhost:8081"},
		{"REDIS_URL", "redis://:pw@cache:6379/2", func(c Config) any { return c.RedisConfigured() }, true},
		{"REDIS_URL", "rediss://cache.example.com:6380", func(c Config) any { return c.RedisURL }, "rediss://cache.example.com:6380"},
		{"REDIS_URL", "redis-sentinel://s1:26379,s2:26379/mymaster",
			func(c Config) any { return c.RedisURL }, "redis-sentinel://s1:26379,s2:26379/mymaster"},
		{"REDIS_HOST", "cache", func(c Config) any { return c.RedisConfigured() }, true},
		{"NODE_ENV", "production", func(c Config) any { return c.Production() }, true},
		{"APP_ENV", "production", func(c Config) any { return c.Production() }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			c := mustParse(t, tt.name, tt.value)
			if got := tt.got(c); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestInvalidValues(t *testing.T) {
	tests := []struct {
		name, value, want string
	}{
		{"SCROLL_TICK_INTERVAL", "abc", `SCROLL_TICK_INTERVAL="abc": must be an integer number of milliseconds from 1 to 1000`},
		{"SCROLL_TICK_INTERVAL", "0", `from 1 to 1000`},
		{"SCROLL_TICK_INTERVAL", "1001", `from 1 to 1000`},
		{"SCROLL_TICK_INTERVAL", "16ms", `must be an integer number of milliseconds`},
		{"PORT", "65536", `PORT="65536": must be an integer from 0 to 65535`},
		{"PORT", "-1", `PORT="-1"`},
		{"LOG_LEVEL", "verbose", `LOG_LEVEL="verbose": must be one of debug, info, warn, error`},
		{"LEADER_POLICY", "anyone", `LEADER_POLICY="anyone": must be one of strict, open`},
		{"SOCKET_PING_INTERVAL", "99", `SOCKET_PING_INTERVAL="99": must be an integer number of milliseconds from 100 to 600000`},
		{"SOCKET_PING_TIMEOUT", "600001", `SOCKET_PING_TIMEOUT="600001"`},
		{"SOCKET_MAX_BUFFER_SIZE", "1023", `SOCKET_MAX_BUFFER_SIZE="1023": must be an integer number of bytes from 1024 to 104857600`},
		{"SOCKET_MAX_BUFFER_SIZE", "104857601", `SOCKET_MAX_BUFFER_SIZE="104857601"`},
		{"RATE_LIMIT_WINDOW_MS", "0", `RATE_LIMIT_WINDOW_MS="0"`},
		{"RATE_LIMIT_MAX_REQUESTS", "0", `RATE_LIMIT_MAX_REQUESTS="0": must be an integer of at least 1`},
		{"RATE_LIMIT_MAX_VIOLATIONS", "-1", `RATE_LIMIT_MAX_VIOLATIONS="-1": must be an integer of at least 0`},
		{"HTTP_RATE_LIMIT_MAX_REQUESTS", "0", `HTTP_RATE_LIMIT_MAX_REQUESTS="0"`},
		{"MAX_SESSION_MEMBERS", "0", `MAX_SESSION_MEMBERS="0": must be an integer from 1 to 10000`},
		{"MAX_SESSION_MEMBERS", "10001", `MAX_SESSION_MEMBERS="10001"`},
		{"HEARTBEAT_INTERVAL", "5", `HEARTBEAT_INTERVAL="5": must be 0 (off) or an integer number of milliseconds from 100 to 600000`},
		{"SESSION_TTL", "1.5", `SESSION_TTL="1.5": must be an integer number of seconds`},
		{"ENABLE_METRICS", "yes", `ENABLE_METRICS="yes": must be true, false, 1 or 0`},
		{"CORS_ORIGIN", "example.com", `CORS_ORIGIN="example.com": must be "*" or a comma-separated list of origins`},
		{"ADMIN_TOKEN", "short-secret", `ADMIN_TOKEN="(hidden)": must be at least 16 characters`},
		{"ADMIN_TOKEN", "a token with spaces", `ADMIN_TOKEN="(hidden)"`},
		{"CORS_ORIGIN", "https://a.example.com/", `CORS_ORIGIN="https://a.example.com/"`},
		{"CORS_ORIGIN", "ftp://a.example.com", `CORS_ORIGIN="ftp://a.example.com"`},
		{"CORS_ORIGIN", "https://*.example.com", `CORS_ORIGIN="https://*.example.com"`},
		{"CORS_ORIGIN", "*,https://a.example.com", `CORS_ORIGIN="*,https://a.example.com"`},
		{"CORS_ORIGIN", "https://a.example.com,,https://b.example.com", `CORS_ORIGIN=`},
		{"REDIS_URL", "http://cache:6379", `REDIS_URL="http://cache:6379": must be a URL like redis://`},
		{"REDIS_URL", "cache:6379", `REDIS_URL=`},
		{"REDIS_PORT", "0", `REDIS_PORT="0": must be an integer from 1 to 65535`},
		{"REDIS_DB", "-1", `REDIS_DB="-1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			_, err := Parse(env(tt.name, tt.value))
			if err == nil {
				t.Fatalf("Parse accepted %s=%q", tt.name, tt.value)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	_, err := Parse(env("PORT", "x", "LOG_LEVEL", "loud", "SCROLL_TICK_INTERVAL", "0", "ENABLE_METRICS", "maybe"))
	if err == nil {
		t.Fatal("Parse accepted four bad values")
	}
	for _, name := range []string{"PORT=", "LOG_LEVEL=", "SCROLL_TICK_INTERVAL=", "ENABLE_METRICS="} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not mention %s: %v", name, err)
		}
	}
}

func TestRedisPasswordNotInError(t *testing.T) {
	for _, v := range []string{"http://user:s3cret@cache:6379", "redis://user:s3cret@"} {
		_, err := Parse(env("REDIS_URL", v))
		if err == nil {
			t.Fatalf("REDIS_URL=%q accepted", v)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(".env", "PORT=4000\nSCROLL_TICK_INTERVAL=20\n# a comment\nLOG_LEVEL=debug\n")
	write("other.env", "PORT=5000\n")
	write("bad.env", "SCROLL_TICK_INTERVAL=fast\n")

	tests := []struct {
		name    string
		env     map[string]string
		port    int
		tick    time.Duration
		wantErr string
	}{
		{name: ".env is read", port: 4000, tick: 20 * time.Millisecond},
		{name: "real env wins over .env", env: map[string]string{"PORT": "4100"}, port: 4100, tick: 20 * time.Millisecond},
		{name: "empty real env falls through to .env", env: map[string]string{"PORT": ""}, port: 4000, tick: 20 * time.Millisecond},
		{name: "ENV_FILE names another file", env: map[string]string{"ENV_FILE": "other.env"}, port: 5000, tick: 16 * time.Millisecond},
		{name: "missing ENV_FILE is an error", env: map[string]string{"ENV_FILE": "nope.env"}, wantErr: `ENV_FILE="nope.env"`},
		{name: "bad value in file is reported", env: map[string]string{"ENV_FILE": "bad.env"}, wantErr: `SCROLL_TICK_INTERVAL="fast"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"PORT", "SCROLL_TICK_INTERVAL", "LOG_LEVEL", "ENV_FILE"} {
				t.Setenv(k, "")
				os.Unsetenv(k)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			c, err := Load()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load() error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Port != tt.port || c.ScrollTickInterval != tt.tick {
				t.Errorf("Load() port=%d tick=%v, want port=%d tick=%v", c.Port, c.ScrollTickInterval, tt.port, tt.tick)
			}
		})
	}
}

func TestLoadWithoutEnvFile(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("ENV_FILE", "")
	os.Unsetenv("ENV_FILE")
	t.Setenv("PORT", "4321")
	c, err := Load()
	if err != nil {
		t.Fatalf("Load() without .env: %v", err)
	}
	if c.Port != 4321 {
		t.Errorf("port = %d, want 4321", c.Port)
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(mustParse(t, "NODE_ENV", "production", "LOG_LEVEL", "warn"), &buf)
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("production log is not one JSON line: %q", buf.String())
	}
	if line["msg"] != "shown" {
		t.Errorf("msg = %v, want shown (info must be filtered at warn)", line["msg"])
	}

	buf.Reset()
	log = NewLogger(mustParse(t, "LOG_LEVEL", "debug"), &buf)
	log.Debug("dev line")
	if out := buf.String(); !strings.Contains(out, "msg=\"dev line\"") || strings.HasPrefix(out, "{") {
		t.Errorf("development log should be debug-level text, got %q", out)
	}
}

func TestLogValueHidesSecrets(t *testing.T) {
	var buf bytes.Buffer
	c := mustParse(t, "REDIS_URL", "redis://user:s3cret@cache:6379/0", "REDIS_PASSWORD", "hunter2")
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", c)
	out := buf.String()
	if strings.Contains(out, "s3cret") || strings.Contains(out, "hunter2") {
		t.Errorf("logged config leaks a password: %s", out)
	}
	if !strings.Contains(out, "cache:6379") {
		t.Errorf("logged config lost the Redis host: %s", out)
	}
}

// TestEnvExample keeps .env.example honest: it must document every variable
// Parse reads, and its commented-out values must be the real defaults.
func TestEnvExample(t *testing.T) {
	raw, err := os.ReadFile("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{}
	var uncommented strings.Builder
	for line := range strings.Lines(string(raw)) {
		name, value, ok := strings.Cut(strings.TrimPrefix(line, "# "), "=")
		if !ok || !strings.HasPrefix(line, "# ") || strings.ToUpper(name) != name || strings.Contains(name, " ") {
			continue
		}
		if _, seen := documented[name]; seen {
			continue // later lines are alternative examples
		}
		documented[name] = value
		uncommented.WriteString(strings.TrimPrefix(line, "# "))
	}

	var read []string
	defaults, err := Parse(func(k string) (string, bool) { read = append(read, k); return "", false })
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range read {
		if slices.ContainsFunc(originalOnly, func(v originalVar) bool { return v.name == name }) {
			continue // looked up only to warn that it does nothing
		}
		if _, ok := documented[name]; !ok {
			t.Errorf(".env.example does not document %s", name)
		}
	}

	values, err := godotenv.Unmarshal(uncommented.String())
	if err != nil {
		t.Fatal(err)
	}
	fromExample, err := Parse(func(k string) (string, bool) { v, ok := values[k]; return v, ok })
	if err != nil {
		t.Fatalf(".env.example with every line uncommented is invalid: %v", err)
	}
	fromExample.InstanceID = defaults.InstanceID // hostname-pid, documented as empty
	if !reflect.DeepEqual(fromExample, defaults) {
		t.Errorf(".env.example values differ from the defaults:\n example  %+v\n defaults %+v", fromExample, defaults)
	}
}

// A deployment that carries the original's variables over is told which of
// them do nothing here, and what to use instead.
func TestOriginalOnlyVariablesAreReported(t *testing.T) {
	env := map[string]string{"RATE_LIMIT_MAX": "50", "REDIS_MAX_RETRIES": "3", "PORT": "3002", "DEBUG_SYNC_ENGINE": ""}
	c, err := Parse(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"RATE_LIMIT_MAX (use RATE_LIMIT_MAX_REQUESTS)", "REDIS_MAX_RETRIES"}
	if !slices.Equal(c.Ignored, want) {
		t.Fatalf("Ignored = %q, want %q", c.Ignored, want)
	}
	if c, _ := Parse(func(string) (string, bool) { return "", false }); len(c.Ignored) != 0 {
		t.Fatalf("Ignored with nothing set = %q", c.Ignored)
	}
}

func TestOpenCORSOnNetwork(t *testing.T) {
	for _, tc := range []struct {
		host, origin string
		want         bool
	}{
		{"", "*", true},
		{"0.0.0.0", "*", true},
		{"192.168.1.10", "https://band.example, *", true},
		{"127.0.0.1", "*", false},
		{"::1", "*", false},
		{"localhost", "*", false},
		{"", "https://band.example", false},
	} {
		if got := (Config{Host: tc.host, CORSOrigin: tc.origin}).OpenCORSOnNetwork(); got != tc.want {
			t.Errorf("HOST=%q CORS_ORIGIN=%q: %v, want %v", tc.host, tc.origin, got, tc.want)
		}
	}
}
