package engine

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/store"
)

// errClosed reports a command on a session this instance has already
// dropped; Join retries with a fresh copy, other commands report
// NOT_IN_SESSION.
var errClosed = errors.New("engine: session closed")

// armed is a pending timer. Callbacks compare their *armed with the
// session's current one, because Stop cannot recall a callback that is
// already waiting for the lock.
type armed struct {
	member string
	t      Timer
}

// session is this instance's copy of one session. Every change of it
// happens in the methods of this file and delivery.go, through one
// pipeline (see the package comment).
//
// Lock contract. op serialises everything that changes the session or
// talks to the store about it (commands, deliveries, resyncs, timers); it
// may be held across store I/O, so the tick scheduler, snapshot readers and
// the sweeper never wait on it (the sweeper TryLocks). mu guards st, closed
// and the timers for readers and is never held across I/O: a writer holds
// op, and takes mu for each change of state together with the events it
// performs, so each member sees a session's events, ticks included, in the
// order the session changed. xmu guards the inbox and is a leaf. Order: op
// before mu before xmu; none is held while taking the engine's map lock.
type session struct {
	e  *Engine
	op sync.Mutex
	mu sync.Mutex

	st     sessionState
	closed bool

	grace    *armed            // detached leader's grace period
	recovery map[string]*armed // detached members' recovery windows

	// playIdx is the position in Engine.playing, -1 when absent, and slot
	// its tick phase; both guarded by Engine.playMu, not mu.
	playIdx int
	slot    int

	// Guarded by op.
	cursor   string // log id of the last performed entry; set with setCursorLocked
	followed bool   // the store delivers this session's batches here
	dirty    bool   // changed while the store was unavailable, not written back yet
	// fenced: cut off long enough for the others to take this instance
	// for dead, the copy stopped presenting a leader (fence); preFence is
	// the copy before, for a store that comes back empty.
	fenced   bool
	preFence *sessionState
	// pending is the command whose commit was under way when the store
	// went away: it may or may not have landed.
	pending *pendingCommit
	gone    []string // local members that left; unindexed once op is released
	local   []string // applyLocked's buffer

	// performed is LogSeq(cursor), 0 when the id has no such form; read
	// without op by deliveries (engineListener.Deliver).
	performed atomic.Uint64

	// Guarded by xmu.
	xmu      sync.Mutex
	inbox    []store.Batch // delivered, not yet performed
	holding  bool          // op is held by a lock() caller, which performs the inbox before it lets go
	draining bool          // a drain goroutine is on its way
}

func newSession(e *Engine, st sessionState) *session {
	return &session{e: e, st: st, playIdx: -1, recovery: make(map[string]*armed)}
}

// lock takes op for a change of the session.
func (s *session) lock() {
	s.op.Lock()
	s.xmu.Lock()
	s.holding = true
	s.xmu.Unlock()
}

// unlock performs what the store delivered while op was held, releases op,
// and then takes the members that left out of the engine's index (which
// may not be locked under a session lock).
func (s *session) unlock() {
	s.performInboxLocked(true)
	gone := s.gone
	s.gone = nil
	s.op.Unlock()
	for _, m := range gone {
		s.e.unindex(m, s)
	}
}

// performInboxLocked performs the batches delivered so far, in order.
// release also ends the hold (under xmu, once the inbox is empty), so
// that a later delivery starts a drain. The caller holds op, not mu.
func (s *session) performInboxLocked(release bool) {
	for {
		s.xmu.Lock()
		if len(s.inbox) == 0 {
			if release {
				s.holding = false
			}
			s.xmu.Unlock()
			return
		}
		b := s.inbox[0]
		s.inbox[0] = store.Batch{}
		if len(s.inbox) == 1 {
			// Emptied: the next delivery reuses the array instead of
			// sliding off its end into a new one.
			s.inbox = s.inbox[:0]
		} else {
			s.inbox = s.inbox[1:]
		}
		s.xmu.Unlock()
		if !s.closed {
			s.applyLocked(b, nil)
		}
	}
}

// run applies c and returns the resulting snapshot. Its events have been
// performed here when it returns, so an ack follows them.
func (s *session) run(c command, now time.Time) (State, error) {
	s.lock()
	defer s.unlock()
	_, sent, err := s.commitLocked(c, now)
	switch {
	case err != nil:
		return State{}, err
	case sent != nil && sent.Version == s.st.version:
		// The snapshot the change broadcast is the state after it
		// (transitions broadcast it once they have made the change): the
		// answer needs no second one (a fifth of a seek's engine time).
		return *sent, nil
	}
	return s.st.snapshot(s.e.clk.Now()), nil
}

// runLocked applies c, as commitLocked does. The caller holds op, not mu.
func (s *session) runLocked(c command, now time.Time) (changed bool, err error) {
	changed, _, err = s.commitLocked(c, now)
	return changed, err
}

// commitLocked is the pipeline: step (the pure transition on this copy),
// commit (compare-and-set on version and leader term, which records and
// publishes the change's operations), deliver (the store hands the batch
// to every instance that follows the session) and perform (each instance
// carries the operations out on its own sockets). The committing instance
// performs its own batch at once, from the commit's answer, rather than
// waiting for its delivery; the delivery is then recognised by its log id
// and skipped. A conflict means the copy was stale: the batches already
// delivered are performed, the stored record adopted for what has not
// arrived, and c evaluated again. A refusal is confirmed against the stored
// record before it is reported, so a stale copy never refuses what the
// store would accept. sent is the snapshot the committed change
// broadcast, if it broadcast one. The caller holds op, not mu.
func (s *session) commitLocked(c command, now time.Time) (changed bool, sent *State, err error) {
	if s.closed {
		return false, nil, errClosed
	}
	e, sh := s.e, s.e.store
	// A session changed from memory during an outage (or never followed)
	// is first written back, or its changes would be lost to the
	// compare-and-set.
	if !sh.Available() || ((s.dirty || !s.followed) && !s.resyncLocked()) {
		changed, err := s.runLocalLocked(c, now, false)
		return changed, nil, err
	}
	rechecked := false
	for attempt := range maxCommitAttempts {
		next, out, err := step(s.st, c, now, e.policy)
		if err != nil {
			if !rechecked {
				rechecked = true
				if s.reloadLocked(false) {
					now = e.clk.Now()
					continue
				}
			}
			return false, nil, err
		}
		if !out.changed {
			// An echo to the sender: nothing to record.
			s.mu.Lock()
			s.performMuLocked(opsOf(out.effects))
			s.mu.Unlock()
			return false, nil, nil
		}
		stampInstance(&next, c, e.inst)
		ctx, cancel := e.commitCtx()
		res, err := sh.Commit(ctx, next.record(), s.st.version, s.st.leaderTerm, opsOf(out.effects))
		cancel()
		switch {
		case err == nil:
			s.applyLocked(res.Batch, &next)
			return true, out.snapshot(), nil
		case errors.Is(err, store.ErrConflict) && !res.Found:
			// The record is gone (expired while idle, or a Redis that lost
			// its data): this copy is the best there is; put it back.
			ctx, cancel := storeCtx()
			_, err := sh.WriteBack(ctx, s.st.record(), nil)
			cancel()
			if err != nil && !sh.Available() {
				changed, err := s.runLocalLocked(c, now, false)
				return changed, nil, err
			}
			now = e.clk.Now()
		case errors.Is(err, store.ErrConflict):
			// The changes that beat this one are usually delivered
			// already: performed from the inbox, the members here get
			// each of them in order. Whatever still differs from the
			// stored record (what has not arrived yet, or another leader
			// term) is adopted from it, and completed from the log when
			// this command's own batch shows the gap.
			s.performInboxLocked(false)
			if res.Current.Version != s.st.version || res.Current.LeaderTerm != s.st.leaderTerm {
				s.adoptRecordLocked(res.Current, true)
			}
			rechecked = true
			if attempt > 0 {
				// Two instances committing to one session in turn can
				// keep beating each other; a random pause breaks the
				// tie. It holds only this session's commands.
				time.Sleep(rand.N(time.Duration(attempt) * time.Millisecond))
			}
			now = e.clk.Now()
		case !sh.Available():
			// The commit may have landed before the store went away:
			// its outcome is unknown, so it is neither refused (it may
			// be in effect) nor forgotten: it is served from memory and
			// landed for sure when the store is back (healLocked).
			e.log.Warn("session store lost during a command; serving from memory", "session", s.st.id, "err", err)
			s.pending = &pendingCommit{cmd: c, at: now, rec: next.record(), before: s.st.record(), prev: s.st.version, term: s.st.leaderTerm}
			changed, err := s.runLocalLocked(c, now, true)
			return changed, nil, err
		default:
			e.log.Error("committing session failed", "session", s.st.id, "err", err)
			return false, nil, newError(protocol.CodeInternal, "the session store failed; try again")
		}
	}
	return false, nil, newError(protocol.CodeInternal, "session %q is changing too fast; try again", s.st.id)
}

// runLocalLocked applies c to this copy alone, for while the store is
// unavailable: the session is marked dirty, and written back when the
// store returns (resyncLocked).
//
// A session with members on other instances (as far as this copy knows)
// is not changed from memory by its members' commands: the change could
// not reach the members elsewhere, who may meanwhile change the session
// themselves, so one band would split in two and, when the store
// returned, one side's acknowledged changes would be lost. Such commands
// are refused with STORE_UNAVAILABLE instead; only the presence of this
// instance's own sockets (leave, detach, attach) is recorded, and replayed
// on the stored state when the store returns (healLocked). inFlight: c's
// commit was under way when the store went away (see pending).
func (s *session) runLocalLocked(c command, now time.Time, inFlight bool) (bool, error) {
	if s.fenced && !localPresence(c) {
		// The fenced copy names no leader, but its members must hear
		// why they cannot lead, not that the lead is free to claim.
		return false, storeUnavailable()
	}
	next, out, err := step(s.st, c, now, s.e.policy)
	if err != nil {
		return false, err
	}
	if out.changed && !inFlight && !localPresence(c) && (s.fenced || s.spansInstances()) {
		return false, storeUnavailable()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.performMuLocked(opsOf(out.effects))
	if out.changed {
		stampInstance(&next, c, s.e.inst)
		s.dirty = true
		s.adoptMuLocked(next)
	}
	return out.changed, nil
}

// localPresence reports whether c only records a socket of this instance
// coming or going.
func localPresence(c command) bool {
	switch c.(type) {
	case leaveCmd, detachCmd, attachCmd:
		return true
	}
	return false
}

// spansInstances reports whether, by this copy, the session has members
// whose socket is on another instance. The caller holds op or mu.
func (s *session) spansInstances() bool {
	for _, m := range s.st.members {
		if m.inst != "" && m.inst != s.e.inst {
			return true
		}
	}
	return false
}

// adoptLocked makes next the session's state. The caller holds op, not mu.
func (s *session) adoptLocked(next sessionState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.adoptMuLocked(next)
}

// adoptMuLocked makes next the session's state and brings the playing set
// and the timers in line with it. The caller holds op and mu.
func (s *session) adoptMuLocked(next sessionState) {
	wasPlaying := s.st.playing
	s.st = next
	if s.st.playing != wasPlaying {
		s.e.setPlaying(s, s.st.playing)
	}
	s.reconcileTimersLocked()
}

// fromRecord rebuilds a stored record as this engine's state.
func (s *session) fromRecord(rec store.SessionRecord) sessionState {
	next := stateFromRecord(rec, s.e.clk.Now())
	if next.maxMembers <= 0 {
		next.maxMembers = s.e.cfg.MaxMembers
	}
	return next
}

// adoptRecordLocked replaces the copy with a stored record (found false:
// the record is gone, e.g. expired, and the session starts over).
func (s *session) adoptRecordLocked(rec store.SessionRecord, found bool) {
	if found {
		s.adoptLocked(s.fromRecord(rec))
		return
	}
	s.adoptLocked(newSessionState(s.st.id, s.e.cfg.MaxMembers, s.e.clk.Now()))
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
	rec, found, err := s.e.store.Load(ctx, s.st.id)
	// A vanished record is not adopted: the next commit writes this copy
	// back instead.
	if err != nil || !found || (rec.Version == s.st.version && !sameVersion) {
		return false
	}
	if rec.Version < s.st.version && rec.LeaderTerm <= s.st.leaderTerm {
		ops := []store.Op{{Kind: store.OpBroadcast, Event: protocol.EventSnapshot, Value: s.st.snapshot(s.e.clk.Now())}}
		if res, err := s.e.store.WriteBack(ctx, s.st.record(), ops); err == nil && res.Written {
			s.e.log.Warn("the stored session had lost changes this instance holds; written back",
				"session", s.st.id, "version", s.st.version, "storedVersion", rec.Version)
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

// opsOf turns a transition's effects into the operations a commit records.
// Payloads stay Go values: a store that leaves the process encodes them,
// the in-process one hands them over as they are.
func opsOf(effects []effect) []store.Op {
	ops := make([]store.Op, len(effects))
	for i, f := range effects {
		op := store.Op{Member: f.member, Event: f.event, Value: f.payload}
		switch f.kind {
		case effBroadcast:
			op.Kind, op.Member = store.OpBroadcast, ""
		case effToMember:
			op.Kind = store.OpToMember
		case effJoinRoom:
			op.Kind = store.OpJoin
		case effLeaveRoom:
			op.Kind = store.OpLeave
		}
		ops[i] = op
	}
	return ops
}

// reconcileTimersLocked arms and cancels timers to match the state: a grace
// timer while the leader is detached, a recovery timer per detached member.
// Deriving timers from the state keeps the transitions free of them. The
// caller holds op and mu.
func (s *session) reconcileTimersLocked() {
	e := s.e
	li := s.st.find(s.st.leader)
	graceNeeded := li >= 0 && !s.st.members[li].connected
	if s.grace != nil && (!graceNeeded || s.grace.member != s.st.leader) {
		s.grace.t.Stop()
		s.grace = nil
	}
	if graceNeeded && s.grace == nil {
		a := &armed{member: s.st.leader}
		a.t = e.clk.AfterFunc(e.cfg.LeaderGrace, func() { s.graceFired(a) })
		s.grace = a
		e.log.Debug("leader detached, grace period started", "session", s.st.id, "leader", a.member)
	}
	for id, a := range s.recovery {
		if i := s.st.find(id); i < 0 || s.st.members[i].connected {
			a.t.Stop()
			delete(s.recovery, id)
		}
	}
	for _, m := range s.st.members {
		if !m.connected && s.recovery[m.id] == nil {
			a := &armed{member: m.id}
			a.t = e.clk.AfterFunc(e.cfg.RecoveryWindow, func() { s.recoveryFired(a) })
			s.recovery[m.id] = a
		}
	}
}

func (s *session) graceFired(a *armed) {
	s.lock()
	defer s.unlock()
	if s.closed || s.grace != a {
		return
	}
	s.mu.Lock()
	s.grace = nil
	s.mu.Unlock()
	if changed, _ := s.runLocked(graceExpiredCmd{leader: a.member}, s.e.clk.Now()); changed {
		s.e.log.Info("leader grace period expired", "session", s.st.id, "previousLeader", a.member, "leader", s.st.leader)
	}
}

func (s *session) recoveryFired(a *armed) {
	s.lock()
	defer s.unlock()
	if s.closed || s.recovery[a.member] != a {
		return
	}
	s.mu.Lock()
	delete(s.recovery, a.member)
	s.mu.Unlock()
	_, _ = s.runLocked(leaveCmd{member: a.member, onlyIfDetached: true, reason: ReasonLeaderDisconnected}, s.e.clk.Now())
}

// tick sends one scroll_tick with the position derived at now. It takes
// only mu, so a command waiting on the store never delays a tick.
func (s *session) tick(now time.Time, nowMs float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.st.playing {
		return
	}
	pos := s.st.positionAt(now)
	s.e.out.ToSessionVolatile(s.st.id, protocol.EventScrollTick, Tick{
		SessionID:       s.st.id,
		PositionMs:      pos,
		TempoBpm:        s.st.tempo,
		ServerTimestamp: nowMs,
		Version:         s.st.version,
		Beat:            s.st.beatFor(pos),
	})
}

func (s *session) snapshot(now time.Time) (State, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return State{}, false
	}
	return s.st.snapshot(now), true
}

func (s *session) sync(memberID string, now time.Time) (SyncResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return SyncResponse{}, notInSession(s.st.id)
	}
	if _, err := requireMember(&s.st, memberID); err != nil {
		return SyncResponse{}, err
	}
	return SyncResponse{
		SessionID:  s.st.id,
		PositionMs: s.st.positionAt(now),
		TempoBpm:   s.st.tempo,
		IsPlaying:  s.st.playing,
		ServerTime: epochMs(now),
	}, nil
}

// refusal returns the SESSION_FULL error memberID joining now would get,
// or nil; Join asks before leaving the member's previous session.
func (s *session) refusal(memberID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.st.find(memberID) >= 0 || s.st.hasRoom() {
		return nil
	}
	return newError(protocol.CodeSessionFull, "session %q is full: at most %d members", s.st.id, s.st.maxMembers)
}

// dropIfUnneeded closes the copy when this instance no longer needs it: no
// member here, no detached member whose timers it may have to run, and
// nothing changed here that the store has not got. The caller holds the
// engine lock, so it must not wait on a command that waits on the store:
// a busy session is needed anyway.
func (s *session) dropIfUnneeded() bool {
	if !s.op.TryLock() {
		return false
	}
	defer s.op.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.dirty {
		return false
	}
	for _, m := range s.st.members {
		if m.inst == s.e.inst || !m.connected {
			return false
		}
	}
	s.closeLocked()
	return true
}

// closeLocked retires the copy: no timer fires for it and it leaves the
// playing set. The caller holds op and mu and removes it from the engine.
func (s *session) closeLocked() {
	s.closed = true
	if s.grace != nil {
		s.grace.t.Stop()
		s.grace = nil
	}
	for id, a := range s.recovery {
		a.t.Stop()
		delete(s.recovery, id)
	}
	if s.st.playing {
		s.e.setPlaying(s, false)
	}
}
