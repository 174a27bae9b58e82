package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bandsync/bandsync/internal/store"
)

// Options configure a Redis store.
type Options struct {
	Conn       Conn
	KeyPrefix  string        // REDIS_KEY_PREFIX ("bandsync:")
	InstanceID string        // INSTANCE_ID; must be unique per running instance
	SessionTTL time.Duration // SESSION_TTL (24 h): idle sessions expire with their keys
	LogMaxLen  int           // REDIS_LOG_MAXLEN (1000): entries kept per session log
	// Heartbeat is how often the instance renews its presence; it counts
	// as dead after three silent heartbeats (REDIS_HEARTBEAT_MS, 2 s).
	Heartbeat time.Duration
	// RecoveryWindow is RECOVERY_WINDOW_MS: how long a dropped socket's
	// record is kept, and how long a dead instance's session list.
	RecoveryWindow time.Duration
	// ShardedPubSub uses SPUBLISH/SSUBSCRIBE. Nil: on for a Cluster
	// client (a shard channel lives on its slot's node, so publishing
	// does not fan out over the whole cluster), off otherwise.
	ShardedPubSub *bool
	Logger        *slog.Logger
}

func (o *Options) defaults() {
	if o.KeyPrefix == "" {
		o.KeyPrefix = "bandsync:"
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 24 * time.Hour
	}
	if o.LogMaxLen <= 0 {
		o.LogMaxLen = 1000
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 2 * time.Second
	}
	if o.RecoveryWindow <= 0 {
		o.RecoveryWindow = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Redis is the Redis backend: a store.Shared, plus the presence, recovery
// and history stores built on the same client.
type Redis struct {
	c       redis.UniversalClient
	cluster bool
	sharded bool
	desc    string
	o       Options
	k       keys
	log     *slog.Logger

	up        atomic.Bool
	everUp    atomic.Bool
	downSince atomic.Int64 // unix ms when it became unavailable, 0 while up
	lastBeat  atomic.Int64 // unix ms when the last successful heartbeat was sent
	kick      chan struct{}

	listener atomic.Pointer[listenerRef]
	bus      *bus
	charts   chartCache // which charts this instance stored (charts.go)

	hooksMu sync.Mutex
	onUp    []func() // run when Redis becomes available again
	onDead  func(instance string, sessions []string)

	startOnce sync.Once
	stop      context.CancelFunc
	wg        sync.WaitGroup
}

var (
	_ store.Shared   = (*Redis)(nil)
	_ store.Presence = (*Redis)(nil)
)

// Open builds the backend. It does not wait for Redis: when Redis cannot be
// reached the instance starts in memory and Start keeps trying. Only a bad
// configuration is an error.
func Open(o Options) (*Redis, error) {
	o.defaults()
	if o.InstanceID == "" {
		return nil, errors.New("redisstore: an instance id is required")
	}
	if strings.ContainsAny(o.InstanceID, "\n{}") {
		return nil, fmt.Errorf("redisstore: instance id %q must not contain newlines or braces", o.InstanceID)
	}
	routeClientLogs.Do(func() { redis.SetLogger(clientLogger{o.Logger.With("component", "go-redis")}) })
	o.Conn.ClientName = clientName(o.InstanceID)
	c, cluster, desc, err := NewClient(o.Conn)
	if err != nil {
		return nil, err
	}
	r := &Redis{c: c, cluster: cluster, desc: desc, o: o, k: keys{o.KeyPrefix}, log: o.Logger.With("component", "redis"),
		kick: make(chan struct{}, 1)}
	r.sharded = cluster
	if o.ShardedPubSub != nil {
		r.sharded = *o.ShardedPubSub
	}
	r.bus = newBus(r)
	r.downSince.Store(time.Now().UnixMilli())
	return r, nil
}

// Client is the underlying go-redis client.
func (r *Redis) Client() redis.UniversalClient { return r.c }

// Describe names the Redis target without credentials, for the start-up log.
func (r *Redis) Describe() string {
	kind := "standalone"
	switch {
	case r.cluster:
		kind = "cluster"
	case strings.HasPrefix(r.desc, "redis-sentinel:"):
		kind = "sentinel"
	}
	pubsub := "pubsub"
	if r.sharded {
		pubsub = "sharded pubsub"
	}
	return r.desc + " (" + kind + ", " + pubsub + ")"
}

// Mode implements store.Store.
func (r *Redis) Mode() string { return "redis" }

// Instance implements store.Shared.
func (r *Redis) Instance() string { return r.o.InstanceID }

// Available implements store.Shared.
func (r *Redis) Available() bool { return r.up.Load() }

// DownSince is when Redis became unavailable (zero while it is available).
func (r *Redis) DownSince() time.Time {
	if ms := r.downSince.Load(); ms > 0 && !r.up.Load() {
		return time.UnixMilli(ms)
	}
	return time.Time{}
}

// Listen implements store.Shared.
func (r *Redis) Listen(l store.Listener) { r.listener.Store(&listenerRef{l}) }

type listenerRef struct{ store.Listener }

// listening returns the Listener, or nil.
func (r *Redis) listening() store.Listener {
	if ref := r.listener.Load(); ref != nil {
		return ref.Listener
	}
	return nil
}

// OnAvailable registers fn to run (on its own goroutine) every time Redis
// becomes available again after an outage.
func (r *Redis) OnAvailable(fn func()) {
	r.hooksMu.Lock()
	r.onUp = append(r.onUp, fn)
	r.hooksMu.Unlock()
}

// OnDeadInstance registers the function that detaches the members of a dead
// instance from the sessions it had (engine.Engine.Reap).
func (r *Redis) OnDeadInstance(fn func(instance string, sessions []string)) {
	r.hooksMu.Lock()
	r.onDead = fn
	r.hooksMu.Unlock()
}

// check records the outcome of a command: an error that means Redis cannot
// serve marks it unavailable at once, so the following commands go to
// memory instead of waiting for timeouts.
func (r *Redis) check(err error) error {
	if unavailable(err) {
		// On a Cluster the failure may be one dead master: go-redis keeps
		// routing its slots there until it reloads its slot map, which it
		// does by itself only on a MOVED reply (a dead node sends none) or
		// once a minute. Reloading now lets the commands reach the
		// promoted replica as soon as the cluster has elected it.
		if cc, ok := r.c.(*redis.ClusterClient); ok {
			cc.ReloadState(context.Background())
		}
		r.setUp(false, err)
	}
	return err
}

func (r *Redis) setUp(up bool, cause error) {
	if r.up.Load() == up {
		return
	}
	if !r.up.CompareAndSwap(!up, up) {
		return
	}
	r.charts.reset()
	if up {
		down := time.UnixMilli(r.downSince.Swap(0))
		if r.everUp.Swap(true) {
			r.log.Info("redis available again; writing sessions back and resuming pub/sub", "target", r.desc, "unavailableFor", time.Since(down).Round(time.Millisecond))
		} else {
			r.log.Info("redis connected", "target", r.Describe())
		}
		r.hooksMu.Lock()
		hooks := append([]func(){}, r.onUp...)
		r.hooksMu.Unlock()
		for _, fn := range hooks {
			go fn()
		}
		if l := r.listening(); l != nil {
			l.Resync()
		}
		return
	}
	r.downSince.Store(time.Now().UnixMilli())
	r.log.Warn("redis unavailable; serving from memory and reconnecting", "target", r.desc, "err", cause)
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Start runs the supervisor (availability and reconnection with backoff),
// the presence heartbeat and the pub/sub receivers until ctx ends or Close.
// It returns at once.
func (r *Redis) Start(ctx context.Context) {
	r.startOnce.Do(func() {
		ctx, r.stop = context.WithCancel(ctx)
		if err := ping(ctx, r.c); err == nil {
			r.setUp(true, nil)
		} else {
			r.log.Warn("redis unavailable at start; serving from memory until it answers", "target", r.desc, "err", err)
		}
		r.wg.Add(2)
		go func() { defer r.wg.Done(); r.supervise(ctx) }()
		go func() { defer r.wg.Done(); r.heartbeat(ctx) }()
	})
}

// Close stops the loops, withdraws this instance's presence (its sockets
// were closed and detached by the shutdown) and closes the client.
func (r *Redis) Close() error {
	if r.stop != nil {
		r.stop()
	}
	r.wg.Wait()
	r.bus.close()
	if r.up.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		// The sorted-set entry stays: the reaper still detaches whatever
		// the shutdown could not.
		_ = r.c.Del(ctx, r.k.instance(r.o.InstanceID)).Err()
		cancel()
	}
	return r.c.Close()
}

// supervise pings Redis: every few hundred ms while it is available, and
// with exponential backoff (250 ms up to 500 ms) while it is not. The cap
// is low because a Sentinel or Cluster failover is over in 2-4 s: the
// backoff is how long the instance keeps serving from memory, its members
// cut off from the other instances', after Redis is back (with a 1 s cap
// the instances agreed 0.9-1.1 s after the failover tests' failovers), and
// two PINGs a second cost nothing.
func (r *Redis) supervise(ctx context.Context) {
	const minWait, maxWait = 250 * time.Millisecond, 500 * time.Millisecond
	upEvery := min(max(r.o.Heartbeat/4, 100*time.Millisecond), time.Second)
	wait := minWait
	for {
		d := upEvery
		if !r.up.Load() {
			d = wait
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.kick:
			t.Stop()
			wait = minWait
			continue
		case <-t.C:
		}
		err := ping(ctx, r.c)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			wait = minWait
			r.setUp(true, nil)
			continue
		}
		r.setUp(false, err)
		wait = min(wait*2, maxWait)
	}
}

// Save implements store.Store: it writes r when it is newer than the stored
// record (the package's compare-and-set rule), without events.
func (r *Redis) Save(ctx context.Context, rec store.SessionRecord) error {
	if rec.SessionID == "" {
		return errors.New("redisstore: record has no session id")
	}
	res, err := r.write(ctx, "newer", rec, 0, 0, nil)
	if err != nil {
		return err
	}
	if !res.Written {
		return fmt.Errorf("%w: session %q is at version %d, refusing version %d",
			store.ErrConflict, rec.SessionID, res.Current.Version, rec.Version)
	}
	return nil
}

// Load implements store.Store.
func (r *Redis) Load(ctx context.Context, sessionID string) (store.SessionRecord, bool, error) {
	if !r.up.Load() {
		return store.SessionRecord{}, false, errUnavailable
	}
	raw, err := r.c.HGet(ctx, r.k.state(sessionID), "rec").Result()
	if errors.Is(err, redis.Nil) {
		return store.SessionRecord{}, false, nil
	}
	if err != nil {
		return store.SessionRecord{}, false, r.check(err)
	}
	return decodeRecord(raw)
}

// Delete implements store.Store.
func (r *Redis) Delete(ctx context.Context, sessionID string) error {
	if !r.up.Load() {
		return errUnavailable
	}
	return r.check(r.c.Del(ctx, r.k.state(sessionID), r.k.log(sessionID), r.k.charts(sessionID)).Err())
}

var errUnavailable = errors.New("redisstore: redis is unavailable")

// routeClientLogs sends go-redis's own messages (dial failures while Redis
// is down: one per attempt) to our logger at debug level, instead of
// unstructured lines on stderr; the supervisor reports outages itself.
var routeClientLogs sync.Once

type clientLogger struct{ log *slog.Logger }

func (l clientLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...))
}

// Commit implements store.Shared.
func (r *Redis) Commit(ctx context.Context, rec store.SessionRecord, prev, term uint64, ops []store.Op) (store.Result, error) {
	res, err := r.write(ctx, "cas", rec, prev, term, ops)
	if err == nil && !res.Written {
		return res, fmt.Errorf("%w: session %q is at version %d term %d, not version %d term %d",
			store.ErrConflict, rec.SessionID, res.Current.Version, res.Current.LeaderTerm, prev, term)
	}
	return res, err
}

// WriteBack implements store.Shared.
func (r *Redis) WriteBack(ctx context.Context, rec store.SessionRecord, ops []store.Op) (store.Result, error) {
	return r.write(ctx, "newer", rec, 0, 0, ops)
}

// published is the body of a published batch (the log ids travel in the
// message's first line).
type published struct {
	Version uint64               `json:"v"`
	Ops     []store.Op           `json:"ops"`
	Record  *store.SessionRecord `json:"rec"`
}

func (r *Redis) write(ctx context.Context, mode string, rec store.SessionRecord, prev, term uint64, ops []store.Op) (store.Result, error) {
	if !r.up.Load() {
		return store.Result{}, errUnavailable
	}
	rec, live, writes := r.charts.split(rec)
	recJSON, err := json.Marshal(rec)
	if err != nil {
		return store.Result{}, err
	}
	if ops, err = encodePayloads(ops); err != nil {
		return store.Result{}, err
	}
	var body []byte
	if len(ops) > 0 {
		if body, err = json.Marshal(published{Version: rec.Version, Ops: ops, Record: &rec}); err != nil {
			return store.Result{}, err
		}
	}
	pub := "PUBLISH"
	if r.sharded {
		pub = "SPUBLISH"
	}
	args := make([]any, 0, 13+len(live)+len(writes)+4*len(ops))
	args = append(args, mode, prev, term, rec.Version, rec.LeaderTerm, recJSON,
		r.o.SessionTTL.Milliseconds(), r.o.LogMaxLen, pub, r.k.channel(rec.SessionID), body)
	args = append(args, len(live))
	for _, f := range live {
		args = append(args, f)
	}
	args = append(args, len(writes)/2)
	for _, v := range writes {
		args = append(args, v)
	}
	for _, op := range ops {
		args = append(args, string(op.Kind), op.Member, op.Event, []byte(op.Payload))
	}
	keys := []string{r.k.state(rec.SessionID), r.k.log(rec.SessionID), r.k.charts(rec.SessionID)}
	reply, err := commitScript.Run(ctx, r.c, keys, args...).Slice()
	if err != nil {
		return store.Result{}, r.check(err)
	}
	if len(reply) < 2 {
		return store.Result{}, fmt.Errorf("redisstore: unexpected commit reply %v", reply)
	}
	if n, _ := reply[0].(int64); n == 0 {
		raw, _ := reply[1].(string)
		if raw == "" {
			return store.Result{}, nil
		}
		cur, _, err := decodeRecord(raw)
		return store.Result{Current: cur, Found: err == nil}, err
	}
	if len(reply) < 4 {
		return store.Result{}, fmt.Errorf("redisstore: unexpected commit reply %v", reply)
	}
	r.charts.wrote(rec.SessionID, writes)
	if len(reply) > 4 {
		if n, _ := reply[4].(int64); n == 1 {
			r.log.Warn("the stored session was older than the copy this command was evaluated on: "+
				"Redis lost acknowledged changes (a failover to a replica they had not reached); restored from this instance's copy",
				"session", rec.SessionID, "version", rec.Version, "evaluatedOn", prev)
		}
	}
	last, _ := reply[1].(string)
	prevID, _ := reply[2].(string)
	joined, _ := reply[3].(string)
	b := store.Batch{Version: rec.Version, Prev: prevID, Last: last, Ops: ops, Record: &rec}
	if joined != "" {
		ids := strings.Split(joined, ",")
		for i := range b.Ops {
			if i < len(ids) {
				b.Ops[i].ID = ids[i]
			}
		}
	}
	return store.Result{Written: true, Batch: b}, nil
}

// encodePayloads returns ops with every Value encoded into Payload: the
// log and the published message carry JSON.
func encodePayloads(ops []store.Op) ([]store.Op, error) {
	// The ops are the store's (store.Shared.Commit): encoded in place.
	for i := range ops {
		if op := &ops[i]; op.Value != nil && op.Payload == nil {
			p, err := json.Marshal(op.Value)
			if err != nil {
				return nil, err
			}
			op.Payload = p
		}
	}
	return ops, nil
}

func decodeRecord(raw string) (store.SessionRecord, bool, error) {
	var rec store.SessionRecord
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		return store.SessionRecord{}, false, fmt.Errorf("redisstore: stored record is not valid JSON: %w", err)
	}
	return rec, true, nil
}

// decodeMessage parses a published batch: "<ids>\n<prev>\n<body>".
func decodeMessage(payload string) (store.Batch, error) {
	idsLine, rest, ok := strings.Cut(payload, "\n")
	if !ok {
		return store.Batch{}, errors.New("redisstore: malformed batch message")
	}
	prev, body, ok := strings.Cut(rest, "\n")
	if !ok {
		return store.Batch{}, errors.New("redisstore: malformed batch message")
	}
	var p published
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		return store.Batch{}, fmt.Errorf("redisstore: malformed batch body: %w", err)
	}
	ids := strings.Split(idsLine, ",")
	if len(ids) != len(p.Ops) {
		return store.Batch{}, fmt.Errorf("redisstore: batch has %d ops and %d ids", len(p.Ops), len(ids))
	}
	for i := range p.Ops {
		p.Ops[i].ID = ids[i]
	}
	return store.Batch{Version: p.Version, Prev: prev, Last: ids[len(ids)-1], Ops: p.Ops, Record: p.Record}, nil
}

// Since implements store.Shared.
func (r *Redis) Since(ctx context.Context, sessionID, cursor string) ([]store.Batch, bool, error) {
	entries, complete, err := r.logSince(ctx, sessionID, cursor)
	if err != nil {
		return nil, false, err
	}
	var out []store.Batch
	prev := cursor
	for _, e := range entries {
		if n := len(out); n > 0 && out[n-1].Version == e.version {
			b := &out[n-1]
			b.Ops = append(b.Ops, e.op)
			b.Last = e.op.ID
			continue
		}
		out = append(out, store.Batch{Version: e.version, Prev: prev, Last: e.op.ID, Ops: []store.Op{e.op}})
		prev = e.op.ID
	}
	for i := range out {
		if i > 0 {
			out[i].Prev = out[i-1].Last
		}
	}
	return out, complete, nil
}

type logEntry struct {
	version uint64
	op      store.Op
}

// logSince reads the session's log after cursor. complete is false when the
// entry at cursor is gone (trimmed or expired), so entries right after it
// may be missing too. A cursor of "0-0" (or "") reads the whole log.
func (r *Redis) logSince(ctx context.Context, sessionID, cursor string) ([]logEntry, bool, error) {
	if !r.up.Load() {
		return nil, false, errUnavailable
	}
	from := cursor
	whole := cursor == "" || cursor == "0-0"
	if whole {
		from = "-"
	}
	msgs, err := r.c.XRangeN(ctx, r.k.log(sessionID), from, "+", int64(r.o.LogMaxLen)*2+16).Result()
	if err != nil {
		return nil, false, r.check(err)
	}
	complete := whole
	if !whole && len(msgs) > 0 && msgs[0].ID == cursor {
		complete = true
		msgs = msgs[1:]
	}
	out := make([]logEntry, 0, len(msgs))
	for _, m := range msgs {
		e := logEntry{op: store.Op{ID: m.ID}}
		for k, v := range m.Values {
			s, _ := v.(string)
			switch k {
			case "v":
				e.version, _ = strconv.ParseUint(s, 10, 64)
			case "k":
				e.op.Kind = store.OpKind(s)
			case "m":
				e.op.Member = s
			case "e":
				e.op.Event = s
			case "p":
				e.op.Payload = json.RawMessage(s)
			}
		}
		out = append(out, e)
	}
	return out, complete, nil
}

// Follow implements store.Shared.
func (r *Redis) Follow(ctx context.Context, sessionID string) (store.SessionRecord, bool, string, error) {
	if !r.up.Load() {
		return store.SessionRecord{}, false, "", errUnavailable
	}
	if err := r.bus.follow(ctx, sessionID); err != nil {
		return store.SessionRecord{}, false, "", r.check(err)
	}
	// Record and cursor in one read, after the subscription took effect:
	// every commit after this read is published to us.
	vals, err := r.c.HMGet(ctx, r.k.state(sessionID), "rec", "lastid").Result()
	if err != nil {
		r.bus.unfollow(sessionID)
		return store.SessionRecord{}, false, "", r.check(err)
	}
	// The instance's session list lets a survivor find this session if
	// the instance dies.
	if err := r.c.SAdd(ctx, r.k.instanceSessions(r.o.InstanceID), sessionID).Err(); err != nil {
		r.check(err)
	}
	cursor := "0-0"
	if s, ok := vals[1].(string); ok && s != "" {
		cursor = s
	}
	raw, ok := vals[0].(string)
	if !ok || raw == "" {
		return store.SessionRecord{}, false, cursor, nil
	}
	rec, found, err := decodeRecord(raw)
	if err != nil {
		r.bus.unfollow(sessionID)
		return store.SessionRecord{}, false, "", err
	}
	return rec, found, cursor, nil
}

// Unfollow implements store.Shared.
func (r *Redis) Unfollow(sessionID string) {
	r.charts.forget(sessionID)
	if r.bus.unfollow(sessionID) && r.up.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r.check(r.c.SRem(ctx, r.k.instanceSessions(r.o.InstanceID), sessionID).Err())
	}
}
