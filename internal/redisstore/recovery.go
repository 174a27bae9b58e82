package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bandsync/bandsync/internal/socketio"
	"github.com/bandsync/bandsync/internal/store"
)

// Recovery is the socketio.SharedRecovery of a Redis deployment: a client
// whose socket (or whole instance) died reconnects to any instance and gets
// its socket id, its session and the events it missed.
//
//   - A socket's record (pid -> socket id and rooms) is written when it is
//     known, at connect and on every room change, and kept alive while the
//     socket is, because a killed instance writes nothing at the end. The
//     key's TTL is the recovery window, renewed every third of it; so after
//     an instance dies its sockets can recover for at least two thirds of
//     RECOVERY_WINDOW_MS (all of it after a clean disconnect).
//   - The events missed are read from the session's log (the Redis stream
//     the commit script appends to). An event's offset is its log id, so
//     the offset a client presents names the last entry it has. Events
//     sent to one socket outside a change (a re-join's snapshot, the
//     heartbeat and latency answers) carry no offset and are not replayed.
//   - The writes are queued and sent in the background: Track and Forget
//     are called under the transport's locks and never wait for Redis.
type Recovery struct {
	r      *Redis
	window time.Duration
	// session maps a room name to a session id ("session:<id>").
	session func(room string) (string, bool)

	followMu sync.Mutex
	follow   func(sessionID string) error

	mu      sync.Mutex
	live    map[string]socketio.Saved // pid -> live socket here
	pending map[string]bool           // pid -> true: write, false: delete
	kick    chan struct{}
}

var _ socketio.SharedRecovery = (*Recovery)(nil)

// Recovery returns the backend's recovery store. session names the rooms
// that are sessions (the transport's "session:<id>"). Start must run for
// the writes to happen.
func (r *Redis) Recovery(window time.Duration, session func(room string) (string, bool)) *Recovery {
	rc := &Recovery{r: r, window: window, session: session,
		live: make(map[string]socketio.Saved), pending: make(map[string]bool), kick: make(chan struct{}, 1)}
	r.OnAvailable(rc.rewrite)
	return rc
}

// SetFollow sets the function that makes this instance follow a session
// before the session's log is replayed to a recovering socket
// (engine.Engine.Follow), so nothing published after the replay's read is
// lost.
func (rc *Recovery) SetFollow(fn func(sessionID string) error) {
	rc.followMu.Lock()
	rc.follow = fn
	rc.followMu.Unlock()
}

// Run writes queued records and renews live ones until ctx ends.
func (rc *Recovery) Run(ctx context.Context) {
	renew := time.NewTicker(max(rc.window/3, time.Second))
	defer renew.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rc.kick:
			// Let a burst of room changes coalesce.
			t := time.NewTimer(10 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			rc.flush(ctx)
		case <-renew.C:
			rc.rewrite()
		}
	}
}

func (rc *Recovery) value(s socketio.Saved, live bool) []byte {
	flag := "0"
	if live {
		flag = "1"
	}
	body, _ := json.Marshal(savedJSON{SID: s.SID, Rooms: s.Rooms, At: s.At.UnixMilli()})
	return []byte(rc.r.o.InstanceID + "\n" + flag + "\n" + string(body))
}

type savedJSON struct {
	SID   string   `json:"sid"`
	Rooms []string `json:"rooms"`
	At    int64    `json:"at"`
}

// flush writes the queued changes in one pipeline.
func (rc *Recovery) flush(ctx context.Context) {
	if !rc.r.up.Load() {
		return // rewrite() runs when Redis is back
	}
	rc.mu.Lock()
	if len(rc.pending) == 0 {
		rc.mu.Unlock()
		return
	}
	writes := make(map[string]socketio.Saved, len(rc.pending))
	var deletes []string
	for pid, write := range rc.pending {
		if s, ok := rc.live[pid]; write && ok {
			writes[pid] = s
		} else if !write {
			deletes = append(deletes, pid)
		}
	}
	clear(rc.pending)
	rc.mu.Unlock()
	rc.write(ctx, writes, deletes)
}

// rewrite writes every live record again: it renews their TTL, and after
// an outage (maybe a Redis that lost its data) it restores them.
func (rc *Recovery) rewrite() {
	if !rc.r.up.Load() {
		return
	}
	rc.mu.Lock()
	writes := make(map[string]socketio.Saved, len(rc.live))
	for pid, s := range rc.live {
		writes[pid] = s
	}
	var deletes []string
	for pid, write := range rc.pending {
		if !write {
			deletes = append(deletes, pid)
		}
	}
	clear(rc.pending)
	rc.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rc.write(ctx, writes, deletes)
}

func (rc *Recovery) write(ctx context.Context, writes map[string]socketio.Saved, deletes []string) {
	if len(writes) == 0 && len(deletes) == 0 {
		return
	}
	_, err := rc.r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for pid, s := range writes {
			p.Set(ctx, rc.r.k.pid(pid), rc.value(s, true), rc.window)
		}
		for _, pid := range deletes {
			p.Del(ctx, rc.r.k.pid(pid))
		}
		return nil
	})
	if err != nil {
		rc.r.check(err)
		// Put them back: they are written when Redis answers again.
		rc.mu.Lock()
		for pid := range writes {
			if _, queued := rc.pending[pid]; !queued {
				rc.pending[pid] = true
			}
		}
		for _, pid := range deletes {
			if _, queued := rc.pending[pid]; !queued {
				rc.pending[pid] = false
			}
		}
		rc.mu.Unlock()
	}
}

func (rc *Recovery) wake() {
	select {
	case rc.kick <- struct{}{}:
	default:
	}
}

// Track implements socketio.SharedRecovery.
func (rc *Recovery) Track(pid string, s socketio.Saved) {
	s.At = time.Now()
	rc.mu.Lock()
	rc.live[pid] = s
	rc.pending[pid] = true
	rc.mu.Unlock()
	rc.wake()
}

// Forget implements socketio.SharedRecovery.
func (rc *Recovery) Forget(pid string) {
	rc.mu.Lock()
	delete(rc.live, pid)
	rc.pending[pid] = false
	rc.mu.Unlock()
	rc.wake()
}

// ParseOffset implements socketio.SharedRecovery: offsets are log ids.
func (rc *Recovery) ParseOffset(offset string) (uint64, bool) { return store.LogSeq(offset) }

// Append implements socketio.RecoveryStore. Nothing to do: the commit
// script records a session's events.
func (rc *Recovery) Append(context.Context, string, uint64, []byte) error { return nil }

// Save implements socketio.RecoveryStore: the socket dropped and may come
// back, here or on another instance, within the window.
func (rc *Recovery) Save(ctx context.Context, pid string, s socketio.Saved) error {
	rc.mu.Lock()
	delete(rc.live, pid)
	delete(rc.pending, pid)
	rc.mu.Unlock()
	if !rc.r.up.Load() {
		return errUnavailable
	}
	err := savePIDScript.Run(ctx, rc.r.c, []string{rc.r.k.pid(pid)},
		rc.r.o.InstanceID+"\n", rc.value(s, false), rc.window.Milliseconds()).Err()
	return rc.r.check(err)
}

// Take implements socketio.RecoveryStore. The take is atomic (two
// instances cannot both resume one socket), and a record whose socket is
// live on another instance is taken only once that instance is found
// dead: whoever else presents a live socket's pid is not that socket, and
// the real owner keeps its record. An instance that was killed is told
// from a live one at once by its connections to Redis, which the kernel
// closes with the process, not by its presence key, which outlives it by
// up to three heartbeats while its clients are already reconnecting.
func (rc *Recovery) Take(ctx context.Context, pid string) (socketio.Saved, bool, error) {
	if !rc.r.up.Load() {
		return socketio.Saved{}, false, errUnavailable
	}
	key := rc.r.k.pid(pid)
	res, err := takePIDScript.Run(ctx, rc.r.c, []string{key}, rc.r.o.InstanceID+"\n").Slice()
	if errors.Is(err, redis.Nil) {
		return socketio.Saved{}, false, nil
	}
	if err != nil {
		return socketio.Saved{}, false, rc.r.check(err)
	}
	if len(res) != 2 {
		return socketio.Saved{}, false, nil
	}
	raw, _ := res[1].(string)
	owner, _, _ := strings.Cut(raw, "\n")
	if taken, _ := res[0].(int64); taken != 1 {
		alive, err := rc.r.instanceConnected(ctx, owner)
		if err != nil {
			return socketio.Saved{}, false, rc.r.check(err)
		}
		if alive {
			rc.r.log.Info("recovery refused: the socket is live on another instance", "instance", owner)
			return socketio.Saved{}, false, nil
		}
		n, err := takeIfScript.Run(ctx, rc.r.c, []string{key}, raw).Int()
		if err != nil {
			return socketio.Saved{}, false, rc.r.check(err)
		}
		if n != 1 {
			return socketio.Saved{}, false, nil // renewed or taken meanwhile
		}
	}
	parts := strings.SplitN(raw, "\n", 3)
	if len(parts) != 3 {
		return socketio.Saved{}, false, nil
	}
	var sj savedJSON
	if err := json.Unmarshal([]byte(parts[2]), &sj); err != nil || sj.SID == "" {
		return socketio.Saved{}, false, nil
	}
	rc.mu.Lock()
	delete(rc.live, pid) // a socket of ours resumed elsewhere... or here
	rc.mu.Unlock()
	return socketio.Saved{SID: sj.SID, Rooms: sj.Rooms, At: time.UnixMilli(sj.At)}, true, nil
}

// Since implements socketio.RecoveryStore: the entries of the targets'
// session logs after offset that went to the whole session, or to the
// socket itself. ok is false when the entry at offset is no longer in the
// log, so some of what followed it may be gone too.
func (rc *Recovery) Since(ctx context.Context, offset uint64, targets []string) ([]socketio.Record, bool, error) {
	if !rc.r.up.Load() {
		return nil, false, errUnavailable
	}
	var sessions []string
	socket := map[string]bool{}
	for _, t := range targets {
		if id, ok := rc.session(t); ok {
			sessions = append(sessions, id)
		} else {
			socket[t] = true
		}
	}
	rc.followMu.Lock()
	follow := rc.follow
	rc.followMu.Unlock()
	cursor := store.LogID(offset)
	var out []socketio.Record
	for _, id := range sessions {
		if follow != nil {
			if err := follow(id); err != nil {
				return nil, false, err
			}
		}
		entries, complete, err := rc.r.logSince(ctx, id, cursor)
		if err != nil {
			return nil, false, err
		}
		if !complete {
			return nil, false, nil
		}
		for _, e := range entries {
			if e.op.Kind != store.OpBroadcast && !(e.op.Kind == store.OpToMember && socket[e.op.Member]) {
				continue
			}
			seq, _ := store.LogSeq(e.op.ID)
			out = append(out, socketio.Record{Offset: seq, Packet: socketio.RecordedPacket(e.op.Event, e.op.Payload, e.op.ID)})
		}
	}
	if len(sessions) > 1 {
		sort.SliceStable(out, func(i, j int) bool { return out[i].Offset < out[j].Offset })
	}
	return out, true, nil
}
