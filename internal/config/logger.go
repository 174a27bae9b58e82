package config

import (
	"io"
	"log/slog"
	"net/url"
)

// NewLogger returns the server's logger: JSON lines in production, where logs
// are shipped to a collector, human-readable text elsewhere; the level comes
// from LOG_LEVEL.
func NewLogger(c Config, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		// A Config that did not come from Parse may carry an empty level.
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Production() {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// LogValue lets the whole Config be logged at start-up without leaking the
// Redis password, whether given alone or inside REDIS_URL.
func (c Config) LogValue() slog.Value {
	redisURL := c.RedisURL
	if u, err := url.Parse(redisURL); err == nil {
		redisURL = u.Redacted()
	}
	password := ""
	if c.RedisPassword != "" {
		password = "xxxxx"
	}
	return slog.GroupValue(
		slog.Int("port", c.Port),
		slog.String("host", c.Host),
		slog.String("corsOrigin", c.CORSOrigin),
		slog.String("logLevel", c.LogLevel),
		slog.String("nodeEnv", c.NodeEnv),
		slog.String("appEnv", c.AppEnv),
		slog.String("instanceId", c.InstanceID),
		slog.Bool("trustProxy", c.TrustProxy),
		slog.Group("redis",
			slog.String("url", redisURL),
			slog.String("host", c.RedisHost),
			slog.Int("port", c.RedisPort),
			slog.String("password", password),
			slog.Int("db", c.RedisDB),
			slog.String("keyPrefix", c.RedisKeyPrefix),
			slog.Duration("sessionTTL", c.SessionTTL),
		),
		slog.Group("sync",
			slog.Duration("targetLatency", c.SyncTargetLatency),
			slog.Duration("scrollTick", c.ScrollTickInterval),
			slog.Int("maxEventBatchSize", c.MaxEventBatchSize),
			slog.Duration("leaderGrace", c.LeaderGrace),
			slog.String("leaderPolicy", c.LeaderPolicy),
			slog.Int("maxSessionMembers", c.MaxSessionMembers),
			slog.Int("maxSessions", c.MaxSessions),
			slog.Duration("sessionIdleTimeout", c.SessionIdleTimeout),
			slog.Duration("heartbeatInterval", c.HeartbeatInterval),
		),
		slog.Group("socket",
			slog.Duration("pingInterval", c.PingInterval),
			slog.Duration("pingTimeout", c.PingTimeout),
			slog.Int("maxPayload", c.MaxPayload),
			slog.Duration("recoveryWindow", c.RecoveryWindow),
			slog.Int("writeQueue", c.WriteQueueSize),
			slog.Int("compressionThreshold", c.CompressionLimit),
		),
		slog.Group("rateLimit",
			slog.Duration("window", c.RateLimitWindow),
			slog.Int("maxRequests", c.RateLimitMaxRequests),
			slog.Int("maxViolations", c.RateLimitMaxViolations),
			slog.Duration("httpWindow", c.HTTPRateLimitWindow),
			slog.Int("httpMaxRequests", c.HTTPRateLimitMaxRequests),
		),
		slog.Group("metrics",
			slog.Bool("enabled", c.EnableMetrics),
			slog.Duration("interval", c.MetricsInterval),
			slog.Duration("retention", c.MetricsRetention),
		),
		slog.Duration("shutdownTimeout", c.ShutdownTimeout),
	)
}
