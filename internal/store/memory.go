package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Memory is the in-process Shared store: the memory mode's store, and the
// store several engines of one process share in tests of multi-instance
// behaviour. It keeps the contract of Shared exactly as the Redis store
// does (compare-and-set commits, a bounded per-session log with "ms-seq"
// ids, publication to the instances that follow a session), so the engine
// runs one pipeline over either.
//
// A Memory value is one instance's view: Peer returns another instance's
// view of the same records. It never fails except on a version conflict or
// an empty session id, and is always available.
//
// It is hand-written because it is the product's own contract in memory;
// there is no library for it.
type Memory struct {
	h        *memHub
	inst     string
	listener atomic.Pointer[listenerRef]
}

// MemoryOptions configure NewMemoryWith.
type MemoryOptions struct {
	// Instance is the first view's instance id ("" by default: the one
	// instance of the memory mode).
	Instance string
	// TTL: a record not changed for this long is gone, with its log, as
	// a Redis session's keys expire after SESSION_TTL. 0: never.
	TTL time.Duration
	// EmptyTTL, when shorter, is the TTL of a record with no members at
	// all: nobody can be waiting for it, and a squatter that creates and
	// leaves sessions must not keep them for TTL. 0: TTL.
	EmptyTTL time.Duration
	// LogMaxLen is how many operations each session's log keeps at
	// most (64), and LogMaxAge how long it keeps one (2 s). In one
	// process the log only completes a follower's gap, which is at most
	// the batches still queued for it, queued for as long as a command
	// holds that follower's session: microseconds, or a fresh snapshot
	// for a follower that was stuck for seconds. Replaying to
	// recovering sockets is the transport's (socketio.MemoryRecovery).
	// A longer log only keeps recent events' payloads alive for the GC:
	// at 625 bands seeking 4 times a second, 64 entries a session were
	// 25 MB of live heap to mark, and a memory-mode seek cost 1.5x the
	// CPU of one over a 4-entry log.
	LogMaxLen int
	LogMaxAge time.Duration
	// Now is the clock of the TTL and of the log ids (time.Now).
	Now func() time.Time
}

type listenerRef struct{ Listener }

// memHub is the state the views of one Memory share.
type memHub struct {
	ttl    time.Duration
	empty  time.Duration
	maxLen int
	maxAge int64 // ms
	now    func() time.Time

	mu       sync.RWMutex
	sessions map[string]*memSession
	swept    time.Time
}

// memSession is one session's record, log and followers. Its mutex is held
// while a commit's batch is handed to the followers, which is what keeps
// every follower's deliveries in log order.
type memSession struct {
	mu      sync.Mutex
	rec     SessionRecord
	found   bool
	written time.Time // last write, for the TTL
	log     []memBatch
	logOps  int    // operations in log
	lastSeq uint64 // LogSeq of the last id handed out; never decreases
	trimmed bool   // entries were dropped from the front of log
	follow  map[*Memory]int
	dropped bool // removed from the hub's map: look the id up again
}

// memBatch is one logged batch: its ops carry their ids.
type memBatch struct {
	version uint64
	first   uint64 // LogSeq of the first op's id
	last    uint64
	ops     []Op
}

var _ Shared = (*Memory)(nil)

// NewMemory returns an empty in-memory store whose records never expire.
func NewMemory() *Memory { return NewMemoryWith(MemoryOptions{}) }

// NewMemoryWith returns an empty in-memory store configured by o.
func NewMemoryWith(o MemoryOptions) *Memory {
	if o.LogMaxLen <= 0 {
		o.LogMaxLen = 64
	}
	if o.LogMaxAge <= 0 {
		o.LogMaxAge = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &memHub{ttl: o.TTL, empty: o.EmptyTTL, maxLen: o.LogMaxLen, maxAge: o.LogMaxAge.Milliseconds(),
		now: o.Now, sessions: make(map[string]*memSession)}
	return &Memory{h: h, inst: o.Instance}
}

// Peer returns the view of another instance, instance, on the same records:
// what one commits, the other's followed sessions receive.
func (m *Memory) Peer(instance string) *Memory { return &Memory{h: m.h, inst: instance} }

var errNoID = errors.New("store: record has no session id")

// session returns the session's entry, creating it when create is set
// (nil otherwise when absent). An expired record is cleared first.
func (h *memHub) session(id string, create bool) *memSession {
	h.mu.RLock()
	s := h.sessions[id]
	h.mu.RUnlock()
	if s != nil || !create {
		return s
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if s = h.sessions[id]; s == nil {
		h.sweepLocked()
		s = &memSession{}
		h.sessions[id] = s
	}
	return s
}

// sweepLocked drops the entries of expired, unfollowed sessions, at most
// once per TTL, so that sessions nobody asks for again do not stay in
// memory. The caller holds h.mu.
func (h *memHub) sweepLocked() {
	now := h.now()
	every := h.ttl
	if h.empty > 0 && (every <= 0 || h.empty < every) {
		every = h.empty
	}
	if every <= 0 || now.Sub(h.swept) < every {
		return
	}
	h.swept = now
	for id, s := range h.sessions {
		s.mu.Lock()
		h.expireLocked(s, now)
		gone := !s.found && len(s.follow) == 0
		s.dropped = gone
		s.mu.Unlock()
		if gone {
			delete(h.sessions, id)
		}
	}
}

// expireLocked clears a record (and its log) not written for the TTL. The
// caller holds s.mu.
func (h *memHub) expireLocked(s *memSession, now time.Time) {
	ttl := h.ttl
	if h.empty > 0 && len(s.rec.Members) == 0 && (ttl <= 0 || h.empty < ttl) {
		ttl = h.empty
	}
	if s.found && ttl > 0 && now.Sub(s.written) >= ttl {
		s.rec, s.found = SessionRecord{}, false
		s.log, s.logOps, s.trimmed = nil, 0, false
	}
}

// lock locks the session's entry (nil when absent and !create) and clears
// an expired record.
func (h *memHub) lock(id string, create bool) *memSession {
	for {
		s := h.session(id, create)
		if s == nil {
			return nil
		}
		s.mu.Lock()
		if !s.dropped {
			h.expireLocked(s, h.now())
			return s
		}
		s.mu.Unlock()
	}
}

// Save stores a copy of r if it is newer than the stored record, without
// logging or publishing anything.
func (m *Memory) Save(_ context.Context, r SessionRecord) error {
	if r.SessionID == "" {
		return errNoID
	}
	s := m.h.lock(r.SessionID, true)
	defer s.mu.Unlock()
	if s.found && s.rec.Version >= r.Version {
		return fmt.Errorf("%w: session %q is at version %d, refusing version %d",
			ErrConflict, r.SessionID, s.rec.Version, r.Version)
	}
	m.h.storeLocked(s, r.Clone())
	return nil
}

// storeLocked keeps r itself: the caller hands it over (Shared.Commit),
// and the stored record is replaced on every write, never changed in
// place, so batches and followers may share it. Copying it here was a
// quarter of a memory-mode seek's allocations.
func (h *memHub) storeLocked(s *memSession, r SessionRecord) {
	s.rec, s.found, s.written = r, true, h.now()
}

// Load returns a copy of the stored record.
func (m *Memory) Load(_ context.Context, sessionID string) (SessionRecord, bool, error) {
	s := m.h.lock(sessionID, false)
	if s == nil {
		return SessionRecord{}, false, nil
	}
	defer s.mu.Unlock()
	if !s.found {
		return SessionRecord{}, false, nil
	}
	return s.rec.Clone(), true, nil
}

// Delete removes the record and its log, if any.
func (m *Memory) Delete(_ context.Context, sessionID string) error {
	s := m.h.lock(sessionID, false)
	if s == nil {
		return nil
	}
	defer s.mu.Unlock()
	s.rec, s.found = SessionRecord{}, false
	s.log, s.logOps, s.trimmed = nil, 0, false
	return nil
}

// Mode reports "memory".
func (m *Memory) Mode() string { return "memory" }

// Instance implements Shared.
func (m *Memory) Instance() string { return m.inst }

// InProcess marks a store whose calls do no I/O: the engine gives its
// commits no deadline.
func (m *Memory) InProcess() {}

// Available implements Shared: memory is always there.
func (m *Memory) Available() bool { return true }

// Listen implements Shared.
func (m *Memory) Listen(l Listener) { m.listener.Store(&listenerRef{l}) }

// Follow implements Shared.
func (m *Memory) Follow(_ context.Context, sessionID string) (SessionRecord, bool, string, error) {
	s := m.h.lock(sessionID, true)
	defer s.mu.Unlock()
	if s.follow == nil {
		s.follow = make(map[*Memory]int)
	}
	s.follow[m]++
	cursor := s.lastLoggedLocked()
	if !s.found {
		return SessionRecord{}, false, cursor, nil
	}
	return s.rec.Clone(), true, cursor, nil
}

// Unfollow implements Shared.
func (m *Memory) Unfollow(sessionID string) {
	s := m.h.lock(sessionID, false)
	if s == nil {
		return
	}
	defer s.mu.Unlock()
	if s.follow[m] > 1 {
		s.follow[m]--
	} else {
		delete(s.follow, m)
	}
}

// Commit implements Shared.
func (m *Memory) Commit(_ context.Context, r SessionRecord, prev, term uint64, ops []Op) (Result, error) {
	if r.SessionID == "" {
		return Result{}, errNoID
	}
	s := m.h.lock(r.SessionID, true)
	defer s.mu.Unlock()
	var v, t uint64
	if s.found {
		v, t = s.rec.Version, s.rec.LeaderTerm
	}
	// A stored record older than prev lost changes the caller holds (the
	// exception of Shared.Commit); this store never loses one itself, but
	// keeps the contract.
	repair := s.found && v < prev && t <= term
	if (v != prev || t != term) && !repair {
		res := Result{Found: s.found}
		if s.found {
			res.Current = s.rec.Clone()
		}
		return res, fmt.Errorf("%w: session %q is at version %d term %d, not version %d term %d",
			ErrConflict, r.SessionID, v, t, prev, term)
	}
	return m.h.writeLocked(s, r, ops), nil
}

// WriteBack implements Shared.
func (m *Memory) WriteBack(_ context.Context, r SessionRecord, ops []Op) (Result, error) {
	if r.SessionID == "" {
		return Result{}, errNoID
	}
	s := m.h.lock(r.SessionID, true)
	defer s.mu.Unlock()
	if s.found && (s.rec.Version >= r.Version || s.rec.LeaderTerm > r.LeaderTerm) {
		return Result{Current: s.rec.Clone(), Found: true}, nil
	}
	return m.h.writeLocked(s, r, ops), nil
}

// lastLoggedLocked is the id of the log's last entry, "0-0" for an empty
// log: its ops carry their ids, so none is formatted again. The caller
// holds s.mu.
func (s *memSession) lastLoggedLocked() string {
	if n := len(s.log); n > 0 {
		ops := s.log[n-1].ops
		return ops[len(ops)-1].ID
	}
	return "0-0"
}

// writeLocked stores r, logs ops under fresh ids and hands the batch to
// the followers, in that order and under s.mu, so log order, delivery
// order and version order are one. The ops' payloads are handed over as
// they are, never encoded: every reader is in this process.
func (h *memHub) writeLocked(s *memSession, r SessionRecord, ops []Op) Result {
	h.storeLocked(s, r)
	// The batch carries the stored copy itself: s.rec is replaced on every
	// write, never changed in place, and followers only read it.
	rec := s.rec
	prev := s.lastLoggedLocked()
	b := Batch{Version: r.Version, Prev: prev, Last: prev, Record: &rec}
	if len(ops) == 0 {
		return Result{Written: true, Batch: b}
	}
	b.Ops = ops // the store's now (Shared.Commit): ids are set in place
	ms := uint64(max(h.now().UnixMilli(), 0))
	var first uint64
	for i := range b.Ops {
		seq := ms << 20
		if seq <= s.lastSeq {
			seq = s.lastSeq + 1
		}
		s.lastSeq = seq
		if i == 0 {
			first = seq
		}
		b.Ops[i].ID = LogID(seq)
	}
	b.Last = b.Ops[len(b.Ops)-1].ID
	s.log = append(s.log, memBatch{version: r.Version, first: first, last: s.lastSeq, ops: b.Ops})
	s.logOps += len(b.Ops)
	// An entry's id is its commit's instant (ms << 20), so its age is
	// read from it.
	oldest := uint64(max(int64(ms)-h.maxAge, 0)) << 20
	for len(s.log) > 1 && (s.logOps > h.maxLen || s.log[0].last < oldest) {
		s.logOps -= len(s.log[0].ops)
		s.log[0] = memBatch{}
		s.log = s.log[1:]
		s.trimmed = true
	}
	for f := range s.follow {
		if ref := f.listener.Load(); ref != nil {
			ref.Deliver(r.SessionID, b)
		}
	}
	return Result{Written: true, Batch: b}
}

// Since implements Shared. complete is false when the entry at cursor is
// no longer in the log (trimmed or expired), so entries after it may be
// missing; from "0-0" it is false once anything was trimmed.
func (m *Memory) Since(_ context.Context, sessionID, cursor string) ([]Batch, bool, error) {
	s := m.h.lock(sessionID, false)
	if s == nil {
		return nil, cursor == "" || cursor == "0-0", nil
	}
	defer s.mu.Unlock()
	var from uint64
	complete := false
	if cursor == "" || cursor == "0-0" {
		complete = !s.trimmed
	} else {
		seq, ok := LogSeq(cursor)
		if !ok {
			return nil, false, fmt.Errorf("store: %q is not a log id", cursor)
		}
		from = seq
		i, found := slices.BinarySearchFunc(s.log, seq, func(b memBatch, seq uint64) int {
			switch {
			case b.last < seq:
				return -1
			case b.first > seq:
				return 1
			}
			return 0
		})
		// Cursors are the last id of a batch, as Follow and delivery hand
		// them out.
		complete = found && s.log[i].last == seq
	}
	var out []Batch
	prev := cursor
	if prev == "" {
		prev = "0-0"
	}
	for _, b := range s.log {
		if b.last <= from {
			continue
		}
		ops := b.ops
		if b.first <= from { // a cursor inside a batch: the rest of it
			k := slices.IndexFunc(ops, func(op Op) bool { s, _ := LogSeq(op.ID); return s > from })
			ops = ops[k:]
		}
		last := LogID(b.last)
		out = append(out, Batch{Version: b.version, Prev: prev, Last: last, Ops: slices.Clone(ops)})
		prev = last
	}
	return out, complete, nil
}

// Len reports how many records are stored.
func (m *Memory) Len() int {
	m.h.mu.RLock()
	all := make([]*memSession, 0, len(m.h.sessions))
	for _, s := range m.h.sessions {
		all = append(all, s)
	}
	m.h.mu.RUnlock()
	n, now := 0, m.h.now()
	for _, s := range all {
		s.mu.Lock()
		m.h.expireLocked(s, now)
		if s.found {
			n++
		}
		s.mu.Unlock()
	}
	return n
}
