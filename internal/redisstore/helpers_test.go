package redisstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/redisstore"
	"github.com/bandsync/bandsync/internal/redisstore/redistest"
	"github.com/bandsync/bandsync/internal/store"
)

func TestMain(m *testing.M) {
	code := m.Run()
	redistest.Cleanup()
	os.Exit(code)
}

// sharedURL is the test binary's private Redis, shared by the tests that
// do not stop it; each uses its own key prefix.
func sharedURL(t *testing.T) string { return redistest.Shared(t) }

var prefixSeq atomic.Int64

// prefix gives each test its own key space on the shared server.
func prefix(t *testing.T) string {
	return fmt.Sprintf("bstest:%d:%s:", prefixSeq.Add(1), t.Name())
}

type backendOpt func(*redisstore.Options)

// open starts a backend for instance inst on url; it is closed when the
// test ends.
func open(t *testing.T, url, pfx, inst string, opts ...backendOpt) *redisstore.Redis {
	t.Helper()
	o := redisstore.Options{
		Conn: redisstore.Conn{URL: url}, KeyPrefix: pfx, InstanceID: inst,
		Heartbeat: 100 * time.Millisecond, RecoveryWindow: 10 * time.Second,
	}
	for _, f := range opts {
		f(&o)
	}
	r, err := redisstore.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); _ = r.Close() })
	r.Start(ctx)
	return r
}

// instance is one engine on a backend, with a recording outbox.
type instance struct {
	eng *engine.Engine
	rs  *redisstore.Redis
	out *recorder
}

func newInstance(t *testing.T, rs *redisstore.Redis, cfg engine.Config) *instance {
	t.Helper()
	out := newRecorder()
	eng := engine.New(cfg, nil, out, rs, nil)
	rs.OnDeadInstance(eng.Reap)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go eng.Run(ctx)
	return &instance{eng: eng, rs: rs, out: out}
}

// recorder is an engine.Outbox (and StreamOutbox) that records what each
// member would receive, following room joins and leaves as the transport
// does.
type recorder struct {
	mu     sync.Mutex
	rooms  map[string]map[string]bool // session -> members in the room
	got    map[string][]delivery      // member -> events received
	ticks  map[string][]time.Time     // session -> when each scroll_tick was sent
	closed int                        // Disconnect calls
}

type delivery struct {
	Event   string
	Payload json.RawMessage
	Offset  string
}

func newRecorder() *recorder {
	return &recorder{rooms: map[string]map[string]bool{}, got: map[string][]delivery{}, ticks: map[string][]time.Time{}}
}

func raw(p any) json.RawMessage {
	if r, ok := p.(json.RawMessage); ok {
		return r
	}
	b, _ := json.Marshal(p)
	return b
}

func (r *recorder) JoinRoom(m, s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rooms[s] == nil {
		r.rooms[s] = map[string]bool{}
	}
	r.rooms[s][m] = true
}

func (r *recorder) LeaveRoom(m, s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.rooms[s], m)
}

func (r *recorder) ToSession(s, e string, p any) { r.ToSessionAt(s, e, p, "") }

func (r *recorder) ToSessionVolatile(s, _ string, _ any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ticks[s] = append(r.ticks[s], time.Now())
}

// tickTimes returns when the session's ticks were sent.
func (r *recorder) tickTimes(session string) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.ticks[session]...)
}

func (r *recorder) ToMember(m, e string, p any) { r.ToMemberAt(m, e, p, "") }

func (r *recorder) Disconnect(string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed++
}

// disconnects is how many sockets the engine closed.
func (r *recorder) disconnects() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

func (r *recorder) ToSessionAt(s, e string, p any, off string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for m := range r.rooms[s] {
		r.got[m] = append(r.got[m], delivery{e, raw(p), off})
	}
}

func (r *recorder) ToMemberAt(m, e string, p any, off string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[m] = append(r.got[m], delivery{e, raw(p), off})
}

// events returns what member received, by event name, in order.
func (r *recorder) events(member string) []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got[member]...)
}

// lastSnapshotVersion is the version of the last snapshot member received
// (0 for none). Only that one is decoded: the failover tests poll it every
// few ms while thousands of snapshots pile up, and decoding them all under
// the race detector took the test process seconds of CPU, which the tick
// measurements then saw as the engine's pauses.
func (r *recorder) lastSnapshotVersion(member string) uint64 {
	r.mu.Lock()
	var last json.RawMessage
	got := r.got[member]
	for i := len(got) - 1; i >= 0; i-- {
		if got[i].Event == protocol.EventSnapshot {
			last = got[i].Payload
			break
		}
	}
	r.mu.Unlock()
	if last == nil {
		return 0
	}
	var st struct {
		Version uint64 `json:"version"`
	}
	_ = json.Unmarshal(last, &st)
	return st.Version
}

// snapshotVersions lists the versions of the snapshots member received.
func (r *recorder) snapshotVersions(member string) []uint64 {
	var out []uint64
	for _, d := range r.events(member) {
		if d.Event != protocol.EventSnapshot {
			continue
		}
		var st engine.State
		_ = json.Unmarshal(d.Payload, &st)
		out = append(out, st.Version)
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func stored(t *testing.T, rs *redisstore.Redis, id string) store.SessionRecord {
	t.Helper()
	rec, ok, err := rs.Load(context.Background(), id)
	if err != nil || !ok {
		t.Fatalf("Load(%q) = ok %v, err %v", id, ok, err)
	}
	return rec
}

func code(err error) string {
	var e *engine.Error
	if err == nil {
		return ""
	}
	if errors.As(err, &e) {
		return e.Code
	}
	return "not an engine error: " + err.Error()
}

func leaderOf(st engine.State) string {
	if st.LeaderSocketID == nil {
		return ""
	}
	return *st.LeaderSocketID
}
