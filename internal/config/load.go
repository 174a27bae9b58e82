package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"
)

// defaultEnvFile is read from the working directory when ENV_FILE is unset;
// its absence is not an error, as in the original (dotenv's config()).
const defaultEnvFile = ".env"

// Load reads the configuration from the process environment and from the
// dotenv file named by ENV_FILE (default ".env" in the working directory,
// skipped when absent). A variable set in the real environment wins over the
// file, so a deployment can override a checked-in .env. Every invalid value
// is reported, joined into one error.
func Load() (Config, error) {
	lookup := nonEmpty(os.LookupEnv)
	file, explicit := lookup("ENV_FILE")
	if !explicit {
		file = defaultEnvFile
	}
	dotenv, err := godotenv.Read(file)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist) && !explicit:
		dotenv = nil
	default:
		return Config{}, fmt.Errorf("ENV_FILE=%q: cannot read it: %w", file, err)
	}
	return Parse(func(name string) (string, bool) {
		if v, ok := lookup(name); ok {
			return v, true
		}
		v, ok := dotenv[name]
		return v, ok
	})
}

// nonEmpty makes a set-but-empty variable count as unset, so `PORT=` in a
// compose file or an empty real variable falls through to .env and defaults
// the way the original's `process.env.X || default` did.
func nonEmpty(lookup func(string) (string, bool)) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := lookup(name)
		if !ok || strings.TrimSpace(v) == "" {
			return "", false
		}
		return v, true
	}
}

// Parse builds a Config from lookup (os.LookupEnv in production, a map in
// tests), applying defaults and validating every value. Durations are integer
// milliseconds, except SESSION_TTL which is integer seconds (it becomes a
// Redis key TTL, which Redis counts in seconds). An empty value counts as
// unset. All problems are returned at once, joined with errors.Join.
func Parse(lookup func(string) (string, bool)) (Config, error) {
	p := &parser{lookup: nonEmpty(lookup)}
	c := Config{
		Port:       p.int("PORT", 3001, 0, 65535),
		Host:       p.str("HOST", ""),
		CORSOrigin: p.corsOrigin("CORS_ORIGIN", "*"),
		LogLevel:   p.oneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error"),
		NodeEnv:    p.str("NODE_ENV", ""),
		AppEnv:     p.str("APP_ENV", ""),
		InstanceID: p.str("INSTANCE_ID", defaultInstanceID()),
		TrustProxy: p.bool("TRUST_PROXY", false),
		AdminToken: p.secret("ADMIN_TOKEN", 16),
		PprofAddr:  p.str("PPROF_ADDR", ""),

		RedisURL:       p.redisURL("REDIS_URL"),
		RedisHost:      p.str("REDIS_HOST", ""),
		RedisPort:      p.int("REDIS_PORT", 6379, 1, 65535),
		RedisPassword:  p.str("REDIS_PASSWORD", ""),
		RedisDB:        p.int("REDIS_DB", 0, 0, math.MaxInt32),
		RedisKeyPrefix: p.str("REDIS_KEY_PREFIX", "bandsync:"),
		RedisHeartbeat: p.millis("REDIS_HEARTBEAT_MS", 2000, 100, minute),
		RedisLogMaxLen: p.int("REDIS_LOG_MAXLEN", 1000, 10, 1_000_000),

		SyncTargetLatency:  p.millis("SYNC_TARGET_LATENCY", 50, 1, 10_000),
		ScrollTickInterval: p.millis("SCROLL_TICK_INTERVAL", 16, 1, 1000),
		MaxEventBatchSize:  p.int("MAX_EVENT_BATCH_SIZE", 100, 1, 10_000),
		LeaderGrace:        p.millis("LEADER_GRACE_MS", 5000, 0, 10*minute),
		LeaderPolicy:       p.oneOf("LEADER_POLICY", "strict", "strict", "open"),
		MaxSessionMembers:  p.int("MAX_SESSION_MEMBERS", 50, 1, 10_000),
		MaxSessions:        p.int("MAX_SESSIONS", 10_000, 1, 10_000_000),
		SessionIdleTimeout: p.millis("SESSION_IDLE_TIMEOUT_MS", 3_600_000, 1000, 30*day),
		SessionTTL:         p.seconds("SESSION_TTL", 86_400, 1, 30*86_400),
		HeartbeatInterval:  p.millisOrOff("HEARTBEAT_INTERVAL", 30_000, 100, 10*minute),

		PingInterval:     p.millis("SOCKET_PING_INTERVAL", 2500, 100, 10*minute),
		PingTimeout:      p.millis("SOCKET_PING_TIMEOUT", 5000, 100, 10*minute),
		MaxPayload:       p.bytes("SOCKET_MAX_BUFFER_SIZE", 1_000_000, 1<<10, 100<<20),
		RecoveryWindow:   p.millis("RECOVERY_WINDOW_MS", 120_000, 1000, 60*minute),
		RecoveryBuffer:   p.bytes("RECOVERY_BUFFER_BYTES", 16<<20, 64<<10, 1<<30),
		WriteQueueSize:   p.int("SOCKET_WRITE_QUEUE", 256, 1, 65_536),
		CompressionLimit: p.bytes("SOCKET_COMPRESSION_THRESHOLD", 1024, 0, 100<<20),

		RateLimitWindow:          p.millis("RATE_LIMIT_WINDOW_MS", 1000, 1, day),
		RateLimitMaxRequests:     p.int("RATE_LIMIT_MAX_REQUESTS", 100, 1, math.MaxInt32),
		RateLimitMaxViolations:   p.int("RATE_LIMIT_MAX_VIOLATIONS", 10, 0, math.MaxInt32),
		HTTPRateLimitWindow:      p.millis("HTTP_RATE_LIMIT_WINDOW_MS", 60_000, 1, day),
		HTTPRateLimitMaxRequests: p.int("HTTP_RATE_LIMIT_MAX_REQUESTS", 600, 1, math.MaxInt32),

		EnableMetrics:    p.bool("ENABLE_METRICS", true),
		MetricsInterval:  p.millis("METRICS_INTERVAL", 10_000, 100, 60*minute),
		MetricsRetention: p.millis("METRICS_RETENTION", day, minute, 30*day),

		ShutdownTimeout: p.millis("SHUTDOWN_TIMEOUT_MS", 10_000, 0, 10*minute),
	}
	for _, v := range originalOnly {
		if _, ok := p.lookup(v.name); ok {
			c.Ignored = append(c.Ignored, v.String())
		}
	}
	return c, errors.Join(p.errs...)
}

// originalOnly are variables the original Node server's code, .env.example
// or docs read that this server does not: a deployment that carries them
// over is told at start-up (see Config.Ignored) instead of finding out
// later that they did nothing. use names the variable that does the job
// here, if one does.
var originalOnly = []originalVar{
	{"RATE_LIMIT_MAX", "RATE_LIMIT_MAX_REQUESTS"},
	{"RATE_LIMIT_WINDOW", "RATE_LIMIT_WINDOW_MS"},
	{"SERVER_ID", "INSTANCE_ID"},
	{"REDIS_TTL", "SESSION_TTL"},
	{"REDIS_ENABLED", "REDIS_URL or REDIS_HOST"},
	{"SYNC_RATE_MS", "SCROLL_TICK_INTERVAL"},
	{"CONNECTION_TIMEOUT", "SOCKET_PING_TIMEOUT"},
	{"REDIS_CONNECT_TIMEOUT", ""},
	{"REDIS_COMMAND_TIMEOUT", ""},
	{"REDIS_MAX_RETRIES", ""},
	{"REDIS_RETRY_DELAY_ON_FAILURE", ""},
	{"DEBUG_REDIS_EVENTS", "LOG_LEVEL=debug"},
	{"DEBUG_SYNC_ENGINE", "LOG_LEVEL=debug"},
	{"SERVER_VERSION", ""},
}

type originalVar struct{ name, use string }

func (v originalVar) String() string {
	if v.use == "" {
		return v.name
	}
	return v.name + " (use " + v.use + ")"
}

// Milliseconds, for the ranges above.
const (
	minute = 60_000
	day    = 24 * 60 * minute
)

// Addr is the listen address for net.Listen.
func (c Config) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

func defaultInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "bandsync"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// parser reads one variable per call and records, rather than returns, what
// is wrong, so that one start-up attempt reports every bad variable.
type parser struct {
	lookup func(string) (string, bool)
	errs   []error
}

func (p *parser) fail(name, shown, allowed string) {
	p.errs = append(p.errs, fmt.Errorf("%s=%q: %s", name, shown, allowed))
}

func (p *parser) str(name, def string) string {
	if v, ok := p.lookup(name); ok {
		return strings.TrimSpace(v)
	}
	return def
}

// secret reads a token that must be long enough not to be guessed; its
// value is never shown in the error.
func (p *parser) secret(name string, minLen int) string {
	v, ok := p.lookup(name)
	if !ok {
		return ""
	}
	v = strings.TrimSpace(v)
	if len(v) < minLen || strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		p.fail(name, "(hidden)", fmt.Sprintf("must be at least %d characters, without spaces or control characters", minLen))
		return ""
	}
	return v
}

func (p *parser) oneOf(name, def string, allowed ...string) string {
	v, ok := p.lookup(name)
	if !ok {
		return def
	}
	norm := strings.ToLower(strings.TrimSpace(v))
	for _, a := range allowed {
		if norm == a {
			return a
		}
	}
	p.fail(name, v, "must be one of "+strings.Join(allowed, ", "))
	return def
}

// integer parses a base-10 integer within [lo, hi]; rangeText describes the
// accepted values in the error message.
func (p *parser) integer(name string, def, lo, hi int64, rangeText string) int64 {
	v, ok := p.lookup(name)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < lo || n > hi {
		p.fail(name, v, rangeText)
		return def
	}
	return n
}

func rangeText(kind string, lo, hi int64) string {
	if hi == math.MaxInt32 {
		return fmt.Sprintf("must be %s of at least %d", kind, lo)
	}
	return fmt.Sprintf("must be %s from %d to %d", kind, lo, hi)
}

func (p *parser) int(name string, def, lo, hi int) int {
	return int(p.integer(name, int64(def), int64(lo), int64(hi), rangeText("an integer", int64(lo), int64(hi))))
}

func (p *parser) bytes(name string, def, lo, hi int) int {
	return int(p.integer(name, int64(def), int64(lo), int64(hi),
		rangeText("an integer number of bytes", int64(lo), int64(hi))))
}

func (p *parser) millis(name string, def, lo, hi int64) time.Duration {
	ms := p.integer(name, def, lo, hi, rangeText("an integer number of milliseconds", lo, hi))
	return time.Duration(ms) * time.Millisecond
}

// millisOrOff is millis where 0 switches the feature off.
func (p *parser) millisOrOff(name string, def, lo, hi int64) time.Duration {
	v, ok := p.lookup(name)
	if ok && strings.TrimSpace(v) == "0" {
		return 0
	}
	ms := p.integer(name, def, lo, hi,
		fmt.Sprintf("must be 0 (off) or an integer number of milliseconds from %d to %d", lo, hi))
	return time.Duration(ms) * time.Millisecond
}

func (p *parser) seconds(name string, def, lo, hi int64) time.Duration {
	s := p.integer(name, def, lo, hi, rangeText("an integer number of seconds", lo, hi))
	return time.Duration(s) * time.Second
}

func (p *parser) bool(name string, def bool) bool {
	v, ok := p.lookup(name)
	if !ok {
		return def
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "1":
		return true
	case "false", "0":
		return false
	}
	p.fail(name, v, "must be true, false, 1 or 0")
	return def
}

// corsOrigin accepts "*" or a comma-separated list of exact browser origins.
// Origins are compared exactly (see httpapi.OriginAllowed), so anything a
// browser would never send as an Origin header - a path, a trailing slash, a
// wildcard host - is rejected here instead of silently never matching.
func (p *parser) corsOrigin(name, def string) string {
	v, ok := p.lookup(name)
	if !ok {
		return def
	}
	if strings.TrimSpace(v) == "*" {
		return "*"
	}
	var origins []string
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if !isOrigin(item) {
			p.fail(name, v, `must be "*" or a comma-separated list of origins like https://band.example.com (scheme http or https, no path or trailing slash)`)
			return def
		}
		origins = append(origins, item)
	}
	return strings.Join(origins, ",")
}

func isOrigin(s string) bool {
	u, err := url.Parse(s)
	return err == nil &&
		(u.Scheme == "http" || u.Scheme == "https") &&
		u.Host != "" && !strings.Contains(u.Host, "*") &&
		u.User == nil && u.Path == "" && u.RawQuery == "" && !u.ForceQuery && u.Fragment == "" &&
		u.Opaque == ""
}

var redisSchemes = []string{"redis", "rediss", "redis-sentinel"}

// redisURL validates REDIS_URL without echoing its password into the error
// (start-up errors end up in logs).
func (p *parser) redisURL(name string) string {
	v, ok := p.lookup(name)
	if !ok {
		return ""
	}
	v = strings.TrimSpace(v)
	u, err := url.Parse(v)
	if err == nil && u.Host != "" {
		for _, s := range redisSchemes {
			if u.Scheme == s {
				return v
			}
		}
	}
	shown := "(unparsable URL, not shown)"
	if err == nil {
		shown = u.Redacted()
	}
	p.fail(name, shown, "must be a URL like redis://[user:password@]host:port[/db], rediss://... (TLS) or redis-sentinel://host:port[,host:port]/master")
	return ""
}
