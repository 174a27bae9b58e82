// Package config reads BandSync's configuration from the environment and an
// optional .env file, using the original Node server's variable names so an
// existing .env keeps working, and validates every value at start-up.
package config

import (
	"net"
	"strings"
	"time"
)

// Config is the whole server configuration. Durations are kept as
// time.Duration; on the environment side they are integer milliseconds as in
// the original (SCROLL_TICK_INTERVAL=16 means 16 ms).
type Config struct {
	Port       int    // PORT (3001)
	Host       string // HOST ("" = all interfaces)
	CORSOrigin string // CORS_ORIGIN ("*"); comma-separated list allowed
	LogLevel   string // LOG_LEVEL (info): debug|info|warn|error
	NodeEnv    string // NODE_ENV
	AppEnv     string // APP_ENV; JSON logs when NODE_ENV or APP_ENV is "production"
	InstanceID string // INSTANCE_ID (default: hostname-pid)
	PprofAddr  string // PPROF_ADDR (""): serve net/http/pprof on this address (keep it on loopback)
	TrustProxy bool   // TRUST_PROXY (false): take the client IP for HTTP rate limits from X-Forwarded-For
	AdminToken string // ADMIN_TOKEN (""): what GET /sessions asks for; without it the list is for loopback clients only

	// Ignored lists the original server's variables that are set but mean
	// nothing here, each with the variable to use instead if there is one;
	// the server warns about them at start-up.
	Ignored []string

	// Redis (issue 4). Neither REDIS_URL nor REDIS_HOST set = in-memory.
	RedisURL       string // REDIS_URL
	RedisHost      string // REDIS_HOST
	RedisPort      int    // REDIS_PORT (6379)
	RedisPassword  string // REDIS_PASSWORD
	RedisDB        int    // REDIS_DB (0)
	RedisKeyPrefix string // REDIS_KEY_PREFIX (bandsync:)
	// RedisHeartbeat is how often an instance renews its presence key; an
	// instance silent for three of these is dead and its members are
	// detached by the others.
	RedisHeartbeat time.Duration // REDIS_HEARTBEAT_MS (2000)
	RedisLogMaxLen int           // REDIS_LOG_MAXLEN (1000): entries kept in each session's event log

	// Sync engine.
	SyncTargetLatency  time.Duration // SYNC_TARGET_LATENCY (50)
	ScrollTickInterval time.Duration // SCROLL_TICK_INTERVAL (16), 1..1000
	MaxEventBatchSize  int           // MAX_EVENT_BATCH_SIZE (100), 1..10000
	LeaderGrace        time.Duration // LEADER_GRACE_MS (5000)
	LeaderPolicy       string        // LEADER_POLICY (strict): strict|open
	MaxSessionMembers  int           // MAX_SESSION_MEMBERS (50), 1..10000
	MaxSessions        int           // MAX_SESSIONS (10000)
	SessionIdleTimeout time.Duration // SESSION_IDLE_TIMEOUT_MS (3600000): empty/idle sessions expire
	SessionTTL         time.Duration // SESSION_TTL (86400) in SECONDS, unlike the rest — Redis key TTL (issue 4)
	HeartbeatInterval  time.Duration // HEARTBEAT_INTERVAL (30000); 0 disables server heartbeats

	// Socket.IO transport.
	PingInterval     time.Duration // SOCKET_PING_INTERVAL (2500)
	PingTimeout      time.Duration // SOCKET_PING_TIMEOUT (5000)
	MaxPayload       int           // SOCKET_MAX_BUFFER_SIZE (1000000) bytes
	RecoveryWindow   time.Duration // RECOVERY_WINDOW_MS (120000)
	RecoveryBuffer   int           // RECOVERY_BUFFER_BYTES (16777216): packets kept for recovery, bytes
	WriteQueueSize   int           // SOCKET_WRITE_QUEUE (256) frames per connection before it is dropped
	CompressionLimit int           // SOCKET_COMPRESSION_THRESHOLD (1024) bytes

	// Rate limiting.
	RateLimitWindow          time.Duration // RATE_LIMIT_WINDOW_MS (1000)
	RateLimitMaxRequests     int           // RATE_LIMIT_MAX_REQUESTS (100)
	RateLimitMaxViolations   int           // RATE_LIMIT_MAX_VIOLATIONS (10); 0 = never disconnect
	HTTPRateLimitWindow      time.Duration // HTTP_RATE_LIMIT_WINDOW_MS (60000)
	HTTPRateLimitMaxRequests int           // HTTP_RATE_LIMIT_MAX_REQUESTS (600) per IP per window

	// Metrics.
	EnableMetrics    bool          // ENABLE_METRICS (true)
	MetricsInterval  time.Duration // METRICS_INTERVAL (10000)
	MetricsRetention time.Duration // METRICS_RETENTION (86400000 ms = 24 h)

	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT_MS (10000)
}

// Production reports whether logs should be JSON.
func (c Config) Production() bool { return c.NodeEnv == "production" || c.AppEnv == "production" }

// OpenCORSOnNetwork reports whether any web origin may drive the server
// (CORS_ORIGIN allows "*") while it listens beyond loopback: then any page
// a band member opens can reach a LAN server through their browser.
func (c Config) OpenCORSOnNetwork() bool {
	open := false
	for _, o := range strings.Split(c.CORSOrigin, ",") {
		open = open || strings.TrimSpace(o) == "*"
	}
	if !open {
		return false
	}
	if c.Host == "localhost" {
		return false
	}
	ip := net.ParseIP(c.Host)
	return ip == nil || !ip.IsLoopback()
}

// RedisConfigured reports whether a Redis store was asked for.
func (c Config) RedisConfigured() bool { return c.RedisURL != "" || c.RedisHost != "" }
