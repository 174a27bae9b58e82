// Package redisstore is BandSync's Redis backend, for several server
// instances behind any load balancer without sticky sessions:
//
//   - Redis implements store.Shared: session records with a version and a
//     leader term, changed only by an atomic compare-and-set Lua script
//     that also appends the change's events to the session's capped log
//     (a stream) and publishes them, so log order = publish order =
//     version order;
//   - it follows sessions over pub/sub (sharded pub/sub on Redis Cluster)
//     and hands their batches to the engine;
//   - it keeps each instance's presence (a heartbeat key) and detaches the
//     members of a dead instance through the engine (Reap);
//   - Recovery is a socketio.RecoveryStore shared by every instance, so a
//     client whose instance died recovers on any other;
//   - History is a metrics.HistoryStore merged across instances;
//   - while Redis cannot be reached the instance serves from memory
//     (Available is false, /health says "degraded"), reconnects with
//     backoff, and the engine writes its sessions back when Redis returns.
//
// docs/redis.md describes the key layout and the consistency model.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Connection settings: short timeouts, because a command that waits for an
// unreachable Redis holds up a client's event; the instance then serves
// from memory until Redis answers again.
const (
	dialTimeout  = time.Second
	ioTimeout    = time.Second
	maxRetries   = 1
	poolTimeout  = 2 * time.Second
	minRetryWait = 8 * time.Millisecond
	maxRetryWait = 64 * time.Millisecond
)

// Conn describes how to reach Redis: URL wins over the other fields.
type Conn struct {
	// URL is redis://[user:password@]host:port[/db], rediss://... (TLS),
	// redis://host:port?addr=host2:port&addr=host3:port for a Cluster
	// (every addr is a seed node), or
	// redis-sentinel://[:password@]host:port[,host:port...]/master[/db].
	URL  string
	Host string
	// ClientName names every connection (CLIENT SETNAME); Open sets it
	// from the instance id.
	ClientName string
	Port       int
	Password   string
	DB         int
}

// NewClient builds the go-redis client for c. It does not connect: an
// unreachable Redis is not an error here (the instance starts degraded).
// cluster reports whether it is a Cluster client; desc describes the target
// without credentials, for logs.
func NewClient(c Conn) (client redis.UniversalClient, cluster bool, desc string, err error) {
	if c.URL == "" {
		port := c.Port
		if port == 0 {
			port = 6379
		}
		o := &redis.Options{Addr: net.JoinHostPort(c.Host, strconv.Itoa(port)), Password: c.Password, DB: c.DB, ClientName: c.ClientName}
		tune(o)
		return redis.NewClient(o), false, "redis://" + o.Addr + "/" + strconv.Itoa(c.DB), nil
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, false, "", errors.New("REDIS_URL is not a valid URL")
	}
	desc = u.Redacted()
	switch u.Scheme {
	case "redis-sentinel":
		fo, err := parseSentinel(u)
		if err != nil {
			return nil, false, "", err
		}
		fo.ClientName = c.ClientName
		return redis.NewFailoverClient(fo), false, desc, nil
	case "redis", "rediss":
		if u.Query().Has("addr") {
			co, err := redis.ParseClusterURL(c.URL)
			if err != nil {
				return nil, false, "", fmt.Errorf("REDIS_URL: %w", err)
			}
			co.DialTimeout, co.ReadTimeout, co.WriteTimeout = orDefault(co.DialTimeout, dialTimeout), orDefault(co.ReadTimeout, ioTimeout), orDefault(co.WriteTimeout, ioTimeout)
			co.MaxRetries, co.PoolTimeout = maxRetries, orDefault(co.PoolTimeout, poolTimeout)
			co.MinRetryBackoff, co.MaxRetryBackoff = minRetryWait, maxRetryWait
			co.DialerRetries, co.DialerRetryTimeout = 1, minRetryWait
			co.ClientName = c.ClientName
			return redis.NewClusterClient(co), true, desc, nil
		}
		o, err := redis.ParseURL(c.URL)
		if err != nil {
			return nil, false, "", fmt.Errorf("REDIS_URL: %w", err)
		}
		o.ClientName = c.ClientName
		tune(o)
		return redis.NewClient(o), false, desc, nil
	default:
		return nil, false, "", fmt.Errorf("REDIS_URL: unsupported scheme %q", u.Scheme)
	}
}

// parseSentinel reads redis-sentinel://[:password@]h1:p1[,h2:p2]/master[/db].
// The password is the master's; a sentinel_password query parameter gives
// the sentinels' own.
func parseSentinel(u *url.URL) (*redis.FailoverOptions, error) {
	parts := strings.FieldsFunc(u.Path, func(r rune) bool { return r == '/' })
	if len(parts) == 0 || len(parts) > 2 {
		return nil, errors.New("REDIS_URL: a redis-sentinel:// URL names the master: redis-sentinel://host:port[,host:port]/master[/db]")
	}
	o := &redis.FailoverOptions{MasterName: parts[0]}
	if len(parts) == 2 {
		db, err := strconv.Atoi(parts[1])
		if err != nil || db < 0 {
			return nil, fmt.Errorf("REDIS_URL: invalid database number %q", parts[1])
		}
		o.DB = db
	}
	for _, h := range strings.Split(u.Host, ",") {
		if h == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(h, "26379")
		}
		o.SentinelAddrs = append(o.SentinelAddrs, h)
	}
	if len(o.SentinelAddrs) == 0 {
		return nil, errors.New("REDIS_URL: a redis-sentinel:// URL needs at least one sentinel host:port")
	}
	if u.User != nil {
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
	}
	o.SentinelPassword = u.Query().Get("sentinel_password")
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = dialTimeout, ioTimeout, ioTimeout
	o.MaxRetries, o.PoolTimeout = maxRetries, poolTimeout
	o.MinRetryBackoff, o.MaxRetryBackoff = minRetryWait, maxRetryWait
	return o, nil
}

func tune(o *redis.Options) {
	o.DialTimeout = orDefault(o.DialTimeout, dialTimeout)
	o.ReadTimeout = orDefault(o.ReadTimeout, ioTimeout)
	o.WriteTimeout = orDefault(o.WriteTimeout, ioTimeout)
	o.PoolTimeout = orDefault(o.PoolTimeout, poolTimeout)
	o.MaxRetries = maxRetries
	o.MinRetryBackoff, o.MaxRetryBackoff = minRetryWait, maxRetryWait
	// One dial per attempt: while Redis is down the supervisor retries
	// with its own backoff, and a command should fail fast to memory.
	o.DialerRetries, o.DialerRetryTimeout = 1, minRetryWait
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// unavailable reports whether err means Redis cannot serve now (as opposed
// to a reply that refuses one command): network errors, timeouts, and the
// replies of a server that is loading, failing over or read-only.
func unavailable(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		msg := re.Error()
		for _, p := range []string{"LOADING", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "BUSY"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	return true
}

// pingTimeout bounds the supervisor's PING.
const pingTimeout = time.Second

// ping checks that Redis can serve. On a Cluster that means every master
// (from a freshly read slot map), not whichever node answers first: while
// one master is down and not yet replaced, its slots' commands fail, and a
// PING that reached a live node would flip the instance back to
// "available" only for the next command to flip it down again, a full
// resync of every session each time. So the instance stays degraded until
// the failover is over, then resyncs once.
func ping(ctx context.Context, c redis.UniversalClient) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return m.Ping(ctx).Err()
		})
	}
	return c.Ping(ctx).Err()
}
