package engine

// This file is the engine's multi-instance mode, used when its store
// implements store.Shared (Redis). The memory mode (session.go) is
// unchanged; the hooks into it are the `if s.e.sh != nil` lines.
//
// # Consistency model
//
// The shared store is authoritative. An instance keeps a session in memory
// (a cache) while it has members there, or detached members it may have to
// time out. A command is applied by running the same pure transition as the
// memory mode on the cached copy and committing the result with a
// compare-and-set on (version, leader term); on a conflict the instance
// reloads the stored record and evaluates the command again, a bounded
// number of times. A command refused on the cached copy (NOT_LEADER,
// NOT_IN_SESSION) is re-checked once against the stored record, so a stale
// cache never refuses what the store would accept. So a command from a
// deposed leader, or a second claim of a leadership just taken on another
// instance, never lands.
//
// A commit carries the change's effects as ordered operations; the store
// appends them to the session's log and publishes them in the same atomic
// step, so every instance receives them in version order. Effects are
// performed only from that delivery, on every instance alike (the
// committing one included), which is what gives members on different
// instances the same order of events. Each delivered event carries its log
// id as its recovery offset. A delivery that does not follow on from the
// last one (a lost publish, a re-established subscription) is completed
// from the log first.
//
// Ticks are not published: each instance ticks its own members from the
// anchor in its copy, so cross-instance traffic grows with state changes,
// not with playback time.
//
// # Outages
//
// While the store is unavailable a session is served from memory exactly as
// in the memory mode, and marked dirty. When the store is back (or the
// subscription was re-established) every cached session is written back if
// it is newer than the stored one (higher version wins, never a lower
// leader term), then completed from the log; the losing side adopts the
// stored state and sends its members a snapshot.

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/store"
)

// StreamOutbox is implemented by an Outbox that can send an event under a
// recovery offset assigned by a shared store (the log id). Without it the
// events go out through the plain Outbox methods, without offsets.
type StreamOutbox interface {
	ToSessionAt(sessionID, event string, payload json.RawMessage, offset string)
	ToMemberAt(memberID, event string, payload json.RawMessage, offset string)
}

// Tuning of the shared mode.
const (
	// maxCommitAttempts bounds the compare-and-set retries of one command.
	maxCommitAttempts = 16
	// deliveryWait is how long a command waits for its own batch to come
	// back before it completes the delivery from the log itself.
	deliveryWait = time.Second
	// storeTimeout bounds one store call made for a command.
	storeTimeout = 3 * time.Second
	// sharedSweepEvery is how often sessions without local members are
	// dropped from memory.
	sharedSweepEvery = time.Second
)

// sharedEngine is the engine's state for the shared mode.
type sharedEngine struct {
	st   store.Shared
	inst string
	out  StreamOutbox // nil when the Outbox cannot send at an offset

	resyncMu      sync.Mutex
	resyncRunning bool
	resyncAgain   bool
}

// sharedSession is a session's state for the shared mode.
type sharedSession struct {
	// Guarded by session.op.
	cursor   string // log id of the last delivered entry
	followed bool   // the store delivers this session's batches
	dirty    bool   // changed while the store was unavailable

	// Guarded by xmu, which is a leaf lock.
	xmu       sync.Mutex
	inbox     []store.Batch
	draining  bool
	delivered string // cursor, readable without session.mu
	waiters   []waiter
}

type waiter struct {
	id string
	ch chan struct{}
}

// enableShared switches the engine to the shared mode when st supports it.
func (e *Engine) enableShared(st store.Store) {
	sh, ok := st.(store.Shared)
	if !ok {
		return
	}
	x := &sharedEngine{st: sh, inst: sh.Instance()}
	x.out, _ = e.out.(StreamOutbox)
	e.sh = x
	sh.Listen(sharedListener{e})
}

// Shared reports whether the engine runs in the multi-instance mode.
func (e *Engine) Shared() bool { return e.sh != nil }

type sharedListener struct{ e *Engine }

func (l sharedListener) Deliver(sessionID string, b store.Batch) {
	if s := l.e.lookup(sessionID); s != nil {
		s.enqueueDelivery(b)
	}
}

func (l sharedListener) Resync() { l.e.resyncAll() }

func storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), storeTimeout)
}

// sharedSessionFor is sessionFor in the shared mode, once liveOrFull found
// no live session: the session is followed
// before it is read, so no batch after the read can be missed, and its
// members are kept (they are live on other instances).
func (e *Engine) sharedSessionFor(sessionID string, mayCreate CreateCheck) (*session, error) {
	var (
		rec            store.SessionRecord
		found          bool
		cursor         string
		followed       bool
		sh             = e.sh.st
		ctx, cancelCtx = storeCtx()
	)
	defer cancelCtx()
	if sh.Available() {
		var err error
		rec, found, cursor, err = sh.Follow(ctx, sessionID)
		switch {
		case err == nil:
			followed = true
		case sh.Available():
			e.log.Error("loading session failed", "session", sessionID, "err", err)
			return nil, newError(protocol.CodeInternal, "the session store is unavailable; try again")
		}
	}
	now := e.clk.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := e.sessions[sessionID]; s != nil {
		if followed {
			sh.Unfollow(sessionID) // balance our redundant Follow
		}
		return s, nil
	}
	if len(e.sessions) >= e.cfg.MaxSessions {
		if followed {
			sh.Unfollow(sessionID)
		}
		return nil, e.serverFull()
	}
	var st sessionState
	if found {
		st = stateFromRecord(rec, now)
		if st.maxMembers <= 0 {
			st.maxMembers = e.cfg.MaxMembers
		}
	} else {
		if err := mayCreate.check(); err != nil {
			if followed {
				sh.Unfollow(sessionID)
			}
			return nil, err
		}
		st = newSessionState(sessionID, e.cfg.MaxMembers, now)
	}
	s := newSession(e, st)
	s.savedVersion = st.version
	s.x.cursor, s.x.delivered, s.x.followed = cursor, cursor, followed
	s.x.dirty = !followed
	s.mu.Lock()
	if st.playing {
		e.setPlaying(s, true)
	}
	s.reconcileTimersLocked()
	s.mu.Unlock()
	e.sessions[sessionID] = s
	return s, nil
}

// Follow makes sure this instance follows the session (loading it if
// needed). The recovery store calls it before it replays a session's log
// to a recovering socket, so that nothing published after the replay's
// read is missed.
func (e *Engine) Follow(sessionID string) error {
	if e.sh == nil {
		return nil
	}
	if err := ValidateSessionID(sessionID); err != nil {
		return err
	}
	_, err := e.sharedSessionFor(sessionID, nil)
	return err
}

// runShared is session.run in the shared mode: the command is committed
// under the session's op lock (never mu: ticks and readers go on while the
// store answers), and the caller waits (without the lock) until its batch
// has been delivered here, so its ack follows its events as in the memory
// mode.
func (s *session) runShared(c command, now time.Time) (State, error) {
	s.op.Lock()
	_, wait, err := s.runSharedLocked(c, now)
	var st State
	if err == nil {
		st = s.st.snapshot(s.e.clk.Now())
	}
	s.op.Unlock()
	if err != nil {
		return State{}, err
	}
	if wait != "" {
		s.awaitDelivery(wait)
	}
	return st, nil
}

// runSharedLocked applies c in the shared mode and returns the log id of
// the committed batch ("" when nothing was committed). The caller holds op
// and not mu: the store calls here are made without mu.
func (s *session) runSharedLocked(c command, now time.Time) (changed bool, wait string, err error) {
	if s.closed {
		return false, "", errClosed
	}
	e, sh := s.e, s.e.sh.st
	// A session changed from memory during an outage (or never followed)
	// is first written back, or its changes would be lost to the
	// compare-and-set.
	if !sh.Available() || ((s.x.dirty || !s.x.followed) && !s.resyncLocked()) {
		changed, err := s.runLocalLocked(c, now)
		return changed, "", err
	}
	rechecked := false
	for range maxCommitAttempts {
		next, out, err := step(s.st, c, now, e.policy)
		if err != nil {
			// The copy may be stale: a refusal is confirmed against the
			// stored record before it is reported.
			if !rechecked {
				rechecked = true
				if s.reloadLocked(false) {
					now = e.clk.Now()
					continue
				}
			}
			return false, "", err
		}
		if !out.changed {
			s.mu.Lock()
			s.emitLocked(out.effects)
			s.mu.Unlock()
			return false, "", nil
		}
		stampInstance(&next, c, e.sh.inst)
		ops, err := encodeOps(out.effects)
		if err != nil {
			return false, "", err
		}
		ctx, cancel := storeCtx()
		res, err := sh.Commit(ctx, next.record(), s.st.version, s.st.leaderTerm, ops)
		cancel()
		switch {
		case err == nil:
			s.adoptLocked(next)
			s.savedVersion = next.version
			return true, res.Batch.Last, nil
		case errors.Is(err, store.ErrConflict) && !res.Found:
			// The record is gone (expired while idle, or a Redis that lost
			// its data): this copy is the best there is; put it back.
			ctx, cancel := storeCtx()
			_, err := sh.WriteBack(ctx, s.st.record(), nil)
			cancel()
			if err != nil && !sh.Available() {
				changed, err := s.runLocalLocked(c, now)
				return changed, "", err
			}
			now = e.clk.Now()
		case errors.Is(err, store.ErrConflict):
			s.adoptRecordLocked(res.Current, res.Found)
			rechecked = true
			now = e.clk.Now()
		case !sh.Available():
			e.log.Warn("session store lost during a command; serving from memory", "session", s.st.id, "err", err)
			changed, err := s.runLocalLocked(c, now)
			return changed, "", err
		default:
			e.log.Error("committing session failed", "session", s.st.id, "err", err)
			return false, "", newError(protocol.CodeInternal, "the session store failed; try again")
		}
	}
	return false, "", newError(protocol.CodeInternal, "session %q is changing too fast; try again", s.st.id)
}

// runLocalLocked is the memory mode's runLocked without the store: used
// while the store is unavailable.
func (s *session) runLocalLocked(c command, now time.Time) (bool, error) {
	next, out, err := step(s.st, c, now, s.e.policy)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if out.changed {
		stampInstance(&next, c, s.e.sh.inst)
		s.x.dirty = true
		s.adoptMuLocked(next)
	}
	s.emitLocked(out.effects)
	return out.changed, nil
}

// adoptLocked makes next the session's state and brings the playing set
// and the timers in line with it. The caller holds op, not mu.
func (s *session) adoptLocked(next sessionState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.adoptMuLocked(next)
}

// adoptMuLocked is adoptLocked for a caller that holds op and mu.
func (s *session) adoptMuLocked(next sessionState) {
	wasPlaying := s.st.playing
	s.st = next
	if s.st.playing != wasPlaying {
		s.e.setPlaying(s, s.st.playing)
	}
	s.reconcileTimersLocked()
}

// adoptRecordLocked replaces the copy with a stored record (found false: the
// record is gone, e.g. expired, and the session starts over).
func (s *session) adoptRecordLocked(rec store.SessionRecord, found bool) {
	now := s.e.clk.Now()
	var next sessionState
	if found {
		next = stateFromRecord(rec, now)
		if next.maxMembers <= 0 {
			next.maxMembers = s.e.cfg.MaxMembers
		}
	} else {
		next = newSessionState(s.st.id, s.e.cfg.MaxMembers, now)
	}
	s.adoptLocked(next)
	s.savedVersion = next.version
}

// reloadLocked reads the stored record and adopts it when it differs from
// the copy; it reports whether it did. sameVersion adopts a stored record of
// the copy's own version too: once the log no longer holds the entry the
// copy was built on, the stored record of that version may be another
// state (see fillLocked).
//
// A stored record older than the copy (under no newer leader term) lost
// changes that this instance has seen and that were acknowledged: Redis
// replicates asynchronously, and a failover can promote a replica they
// had not reached. The copy is written back then, not the older record
// adopted.
func (s *session) reloadLocked(sameVersion bool) bool {
	ctx, cancel := storeCtx()
	defer cancel()
	rec, found, err := s.e.sh.st.Load(ctx, s.st.id)
	// A vanished record is not adopted: the next commit writes this copy
	// back instead.
	if err != nil || !found || (rec.Version == s.st.version && !sameVersion) {
		return false
	}
	if rec.Version < s.st.version && rec.LeaderTerm <= s.st.leaderTerm {
		ops, _ := encodeOps([]effect{{kind: effBroadcast, event: protocol.EventSnapshot, payload: s.st.snapshot(s.e.clk.Now())}})
		if res, err := s.e.sh.st.WriteBack(ctx, s.st.record(), ops); err == nil && res.Written {
			s.e.log.Warn("the stored session had lost changes this instance holds; written back",
				"session", s.st.id, "version", s.st.version, "storedVersion", rec.Version)
			s.savedVersion = s.st.version
		}
		return false
	}
	s.adoptRecordLocked(rec, true)
	return true
}

// stampInstance records on which instance a joining member's socket is.
func stampInstance(st *sessionState, c command, inst string) {
	if jc, ok := c.(joinCmd); ok {
		if i := st.find(jc.member); i >= 0 {
			st.members[i].inst = inst
		}
	}
}

func encodeOps(effects []effect) ([]store.Op, error) {
	ops := make([]store.Op, 0, len(effects))
	for _, f := range effects {
		var op store.Op
		switch f.kind {
		case effBroadcast:
			op = store.Op{Kind: store.OpBroadcast, Event: f.event}
		case effToMember:
			op = store.Op{Kind: store.OpToMember, Member: f.member, Event: f.event}
		case effJoinRoom:
			op = store.Op{Kind: store.OpJoin, Member: f.member}
		case effLeaveRoom:
			op = store.Op{Kind: store.OpLeave, Member: f.member}
		}
		if f.payload != nil {
			p, err := json.Marshal(f.payload)
			if err != nil {
				return nil, err
			}
			op.Payload = p
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// enqueueDelivery queues a published batch; one goroutine at a time per
// session performs them, in order, so a slow session never holds up the
// subscription of the others.
func (s *session) enqueueDelivery(b store.Batch) {
	s.x.xmu.Lock()
	s.x.inbox = append(s.x.inbox, b)
	start := !s.x.draining
	s.x.draining = true
	s.x.xmu.Unlock()
	if start {
		go s.drainDeliveries()
	}
}

func (s *session) drainDeliveries() {
	for {
		s.x.xmu.Lock()
		if len(s.x.inbox) == 0 {
			s.x.draining = false
			s.x.xmu.Unlock()
			return
		}
		b := s.x.inbox[0]
		s.x.inbox[0] = store.Batch{}
		s.x.inbox = s.x.inbox[1:]
		s.x.xmu.Unlock()

		s.op.Lock()
		var gone []string
		if !s.closed {
			gone = s.applyBatchLocked(b)
		}
		s.op.Unlock()
		for _, m := range gone {
			s.e.unindex(m, s)
		}
	}
}

// applyBatchLocked performs a delivered batch unless it was already
// delivered, completing a gap from the log first. It returns the local
// members that are no longer members here, for the caller to unindex once
// the session lock is released.
func (s *session) applyBatchLocked(b store.Batch) (gone []string) {
	if store.CompareLogIDs(b.Last, s.x.cursor) <= 0 {
		return nil
	}
	before := s.localMembers()
	if b.Prev != s.x.cursor {
		s.fillLocked()
	}
	if store.CompareLogIDs(b.Last, s.x.cursor) > 0 {
		s.performLocked(b.Ops)
		s.setCursorLocked(b.Last)
	}
	if b.Record != nil && b.Record.Version > s.st.version {
		s.adoptRecordLocked(*b.Record, true)
	}
	return s.departed(before)
}

// localMembers lists the members whose socket is on this instance.
func (s *session) localMembers() []string {
	var ids []string
	for _, m := range s.st.members {
		if m.inst == s.e.sh.inst {
			ids = append(ids, m.id)
		}
	}
	return ids
}

// departed returns those of before that are no longer local members.
func (s *session) departed(before []string) []string {
	var gone []string
	for _, id := range before {
		if i := s.st.find(id); i < 0 || s.st.members[i].inst != s.e.sh.inst {
			gone = append(gone, id)
		}
	}
	return gone
}

// performLocked carries out delivered operations on this instance's
// sockets. The caller holds op; mu is taken so the events keep their order
// with the ticks.
func (s *session) performLocked(ops []store.Op) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, so, id := s.e.out, s.e.sh.out, s.st.id
	for _, op := range ops {
		switch op.Kind {
		case store.OpBroadcast:
			if so != nil && op.ID != "" {
				so.ToSessionAt(id, op.Event, op.Payload, op.ID)
			} else {
				o.ToSession(id, op.Event, op.Payload)
			}
		case store.OpToMember:
			if so != nil && op.ID != "" {
				so.ToMemberAt(op.Member, op.Event, op.Payload, op.ID)
			} else {
				o.ToMember(op.Member, op.Event, op.Payload)
			}
		case store.OpJoin:
			o.JoinRoom(op.Member, id)
		case store.OpLeave:
			o.LeaveRoom(op.Member, id)
		}
	}
}

func (s *session) setCursorLocked(id string) {
	s.x.cursor = id
	s.x.xmu.Lock()
	s.x.delivered = id
	kept := s.x.waiters[:0]
	for _, w := range s.x.waiters {
		if store.CompareLogIDs(w.id, id) <= 0 {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	clear(s.x.waiters[len(kept):])
	s.x.waiters = kept
	s.x.xmu.Unlock()
}

// fillLocked delivers what the log holds after the cursor, then refreshes
// the copy from the stored record. When the log no longer reaches back to
// the cursor, the members here get a fresh snapshot instead of the events
// they cannot have.
func (s *session) fillLocked() {
	sh := s.e.sh.st
	if !sh.Available() {
		return
	}
	ctx, cancel := storeCtx()
	defer cancel()
	batches, complete, err := sh.Since(ctx, s.st.id, s.x.cursor)
	if err != nil {
		s.e.log.Warn("reading the session log failed", "session", s.st.id, "err", err)
		return
	}
	for _, b := range batches {
		if store.CompareLogIDs(b.Last, s.x.cursor) <= 0 {
			continue
		}
		s.performLocked(b.Ops)
		s.setCursorLocked(b.Last)
	}
	// An incomplete log lost the entry at the cursor: trimmed, or cut
	// by a failover, and then the stored record of the copy's version
	// may be another state than the copy.
	changed := s.reloadLocked(!complete)
	if !complete || (changed && len(batches) == 0) {
		s.mu.Lock()
		s.e.out.ToSession(s.st.id, protocol.EventSnapshot, s.st.snapshot(s.e.clk.Now()))
		s.mu.Unlock()
	}
}

// awaitDelivery waits until the batch ending at id has been delivered
// here; if it does not come (a publish lost on the way), the log is read
// instead.
func (s *session) awaitDelivery(id string) {
	s.x.xmu.Lock()
	if store.CompareLogIDs(id, s.x.delivered) <= 0 {
		s.x.xmu.Unlock()
		return
	}
	w := waiter{id: id, ch: make(chan struct{})}
	s.x.waiters = append(s.x.waiters, w)
	s.x.xmu.Unlock()
	t := time.NewTimer(deliveryWait)
	defer t.Stop()
	select {
	case <-w.ch:
	case <-t.C:
		s.op.Lock()
		if !s.closed {
			s.fillLocked()
		}
		s.op.Unlock()
	}
}

// resyncAll brings every cached session back in line with the store, one
// pass at a time; a request during a pass makes another pass follow.
func (e *Engine) resyncAll() {
	x := e.sh
	x.resyncMu.Lock()
	if x.resyncRunning {
		x.resyncAgain = true
		x.resyncMu.Unlock()
		return
	}
	x.resyncRunning = true
	x.resyncMu.Unlock()
	go func() {
		for {
			e.mu.Lock()
			all := make([]*session, 0, len(e.sessions))
			for _, s := range e.sessions {
				all = append(all, s)
			}
			e.mu.Unlock()
			for _, s := range all {
				s.resync()
			}
			x.resyncMu.Lock()
			if !x.resyncAgain {
				x.resyncRunning = false
				x.resyncMu.Unlock()
				return
			}
			x.resyncAgain = false
			x.resyncMu.Unlock()
		}
	}()
}

// resync follows the session if it is not followed yet, writes its state
// back (the higher version wins), and completes it from the log.
func (s *session) resync() {
	s.op.Lock()
	defer s.op.Unlock()
	if !s.closed {
		s.resyncLocked()
	}
}

// resyncLocked is resync under the session's op lock; it reports whether
// the session is now in line with the store (followed and not dirty).
func (s *session) resyncLocked() bool {
	sh := s.e.sh.st
	if !sh.Available() {
		return false
	}
	ctx, cancel := storeCtx()
	defer cancel()
	if !s.x.followed {
		_, _, cursor, err := sh.Follow(ctx, s.st.id)
		if err != nil {
			return false
		}
		s.x.followed = true
		s.setCursorLocked(cursor)
	}
	// The members connected here now; if this instance was cut off long
	// enough to be taken for dead, the others detached them meanwhile.
	var live []string
	for _, m := range s.st.members {
		if m.connected && m.inst == s.e.sh.inst {
			live = append(live, m.id)
		}
	}
	now := s.e.clk.Now()
	ops, _ := encodeOps([]effect{{kind: effBroadcast, event: protocol.EventSnapshot, payload: s.st.snapshot(now)}})
	res, err := sh.WriteBack(ctx, s.st.record(), ops)
	if err != nil {
		s.e.log.Warn("writing a session back failed", "session", s.st.id, "err", err)
		return false
	}
	if res.Written {
		if s.x.dirty {
			s.e.log.Info("session written back to the store", "session", s.st.id, "version", s.st.version)
		}
		s.x.dirty = false
		s.savedVersion = s.st.version
	} else if res.Found && s.x.dirty {
		// Changes made here from memory lost to a newer stored state:
		// the members here are told what holds now.
		s.e.log.Info("session replaced by the newer stored one", "session", s.st.id,
			"version", s.st.version, "storedVersion", res.Current.Version)
		s.adoptRecordLocked(res.Current, true)
		s.x.dirty = false
		s.mu.Lock()
		s.e.out.ToSession(s.st.id, protocol.EventSnapshot, s.st.snapshot(now))
		s.mu.Unlock()
	}
	// What others committed meanwhile comes from the log, in order.
	s.fillLocked()
	for _, id := range live {
		if i := s.st.find(id); i >= 0 && !s.st.members[i].connected && s.st.members[i].inst == s.e.sh.inst {
			s.e.log.Info("re-attaching a member detached while this instance was cut off", "session", s.st.id, "member", id)
			_, _, _ = s.runSharedLocked(attachCmd{member: id, inst: s.e.sh.inst}, s.e.clk.Now())
		}
	}
	return true
}

// sweepShared drops from memory the sessions this instance no longer needs:
// no member here, and no detached member whose timers it may have to run.
// The store keeps them (until SESSION_TTL) for the other instances.
func (e *Engine) sweepShared() int {
	var dropped []string
	e.mu.Lock()
	for id, s := range e.sessions {
		if !s.dropIfUnneeded() {
			continue
		}
		delete(e.sessions, id)
		dropped = append(dropped, id)
	}
	e.mu.Unlock()
	for _, id := range dropped {
		e.sh.st.Unfollow(id)
	}
	return len(dropped)
}

func (s *session) dropIfUnneeded() bool {
	// The sweep holds the engine lock: it must not wait on a command that
	// waits on the store. A busy session is needed anyway.
	if !s.op.TryLock() {
		return false
	}
	defer s.op.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.x.dirty {
		return false
	}
	for _, m := range s.st.members {
		if m.inst == s.e.sh.inst || !m.connected {
			return false
		}
	}
	s.closeLocked()
	return true
}

// runSharedLoop sweeps unneeded sessions until ctx ends.
func (e *Engine) runSharedLoop(ctx context.Context) {
	t := time.NewTicker(sharedSweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.sweepShared()
		}
	}
}

// Reap detaches the members that were on a dead instance from the given
// sessions: their leader grace and recovery windows start now, here and on
// every instance that holds the sessions. The store's presence tracking
// calls it for instances whose heartbeat stopped.
func (e *Engine) Reap(instance string, sessionIDs []string) {
	if e.sh == nil || instance == e.sh.inst {
		return
	}
	for _, id := range sessionIDs {
		if ValidateSessionID(id) != nil {
			continue
		}
		s, err := e.sharedSessionFor(id, nil)
		if err != nil {
			e.log.Warn("reaping a dead instance's members failed", "instance", instance, "session", id, "err", err)
			continue
		}
		st, err := s.run(detachInstanceCmd{inst: instance}, e.clk.Now())
		if err == nil {
			e.log.Info("members of a dead instance detached", "instance", instance, "session", id, "version", st.Version)
		}
	}
}

// sharedSnapshot reads a session this instance does not hold from the
// store, for GET /sessions/{id}.
func (e *Engine) sharedSnapshot(sessionID string) (State, bool) {
	if !e.sh.st.Available() {
		return State{}, false
	}
	ctx, cancel := storeCtx()
	defer cancel()
	rec, found, err := e.sh.st.Load(ctx, sessionID)
	if err != nil || !found {
		return State{}, false
	}
	now := e.clk.Now()
	st := stateFromRecord(rec, now)
	return st.snapshot(now), true
}

// sharedAttach is Attach in the shared mode: the recovered socket may have
// been on another instance, so the session is found from the rooms it
// recovered and the member is re-stamped as being here.
func (e *Engine) sharedAttach(memberID string, sessionIDs []string) {
	s := e.memberSession(memberID)
	if s == nil {
		for _, id := range sessionIDs {
			if ValidateSessionID(id) != nil {
				continue
			}
			if cand, err := e.sharedSessionFor(id, nil); err == nil {
				s = cand
				break
			}
		}
	}
	if s == nil {
		return
	}
	if _, err := s.run(attachCmd{member: memberID, inst: e.sh.inst}, e.clk.Now()); err != nil {
		return
	}
	e.mu.Lock()
	e.index[memberID] = s
	e.mu.Unlock()
}

// attachCmd: a member's socket is (again) connected, on instance inst.
type attachCmd struct{ member, inst string }

func (c attachCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	i, err := requireMember(s, c.member)
	if err != nil {
		return out, err
	}
	if s.members[i].connected && s.members[i].inst == c.inst {
		return out, nil
	}
	s.touch(now)
	out.changed = true
	s.members[i].connected = true
	s.members[i].inst = c.inst
	out.presenceChanged(s, now)
	return out, nil
}

// detachCmd: a member's socket on instance inst dropped and may recover.
// A member that has meanwhile recovered on another instance stays
// attached.
type detachCmd struct{ member, inst string }

func (c detachCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	i, err := requireMember(s, c.member)
	if err != nil {
		return out, err
	}
	if !s.members[i].connected || s.members[i].inst != c.inst {
		return out, nil
	}
	s.touch(now)
	out.changed = true
	s.members[i].connected = false
	out.presenceChanged(s, now)
	return out, nil
}

// detachInstanceCmd: instance inst is dead; its connected members are
// detached, as if each socket had dropped.
type detachInstanceCmd struct{ inst string }

func (c detachInstanceCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	n := 0
	for i := range s.members {
		if s.members[i].connected && s.members[i].inst == c.inst {
			if n == 0 {
				s.touch(now)
				out.changed = true
			}
			s.members[i].connected = false
			n++
		}
	}
	if n > 0 {
		out.presenceChanged(s, now)
	}
	return out, nil
}
