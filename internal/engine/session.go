package engine

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/bandsync/bandsync/internal/protocol"
)

// errClosed reports a command on a session the idle sweeper has already
// removed; Join retries with a fresh session, other commands report
// NOT_IN_SESSION.
var errClosed = errors.New("engine: session closed")

// armed is a pending timer. Callbacks compare their *armed with the
// session's current one, because Stop cannot recall a callback that is
// already waiting for the lock.
type armed struct {
	member string
	t      Timer
}

// session is one live session. Every mutation of a session happens in the
// methods in this file and shared.go.
//
// Lock contract. op serialises everything that changes the session or
// talks to the store about it (commands, deliveries, resyncs, timers); it
// may be held across store I/O, so the tick scheduler, snapshot readers and
// the sweepers never wait on it (sweepers TryLock). mu guards st, closed
// and the timers for readers and is never held across I/O: a writer holds
// op, and takes mu for each change of state together with the events it
// sends, so each member sees a session's events, ticks included, in the
// order the session changed. Order: op before mu; neither is held while
// taking the engine's map lock.
type session struct {
	e  *Engine
	op sync.Mutex
	mu sync.Mutex

	st           sessionState
	closed       bool
	savedVersion uint64

	grace    *armed            // detached leader's grace period
	recovery map[string]*armed // detached members' recovery windows

	// playIdx is the position in Engine.playing, -1 when absent, and slot
	// its tick phase; both guarded by Engine.playMu, not mu.
	playIdx int
	slot    int

	x sharedSession // the shared mode's state (shared.go)
}

func newSession(e *Engine, st sessionState) *session {
	return &session{e: e, st: st, playIdx: -1, recovery: make(map[string]*armed)}
}

// run applies c and returns the resulting snapshot.
func (s *session) run(c command, now time.Time) (State, error) {
	if s.e.sh != nil {
		return s.runShared(c, now)
	}
	s.op.Lock()
	defer s.op.Unlock()
	if _, err := s.runLocked(c, now); err != nil {
		return State{}, err
	}
	return s.st.snapshot(now), nil
}

// runLocked applies c: the new state is committed and saved, then the
// effects are sent, then the playing set and the timers are brought in
// line with the new state. The caller holds op.
func (s *session) runLocked(c command, now time.Time) (changed bool, err error) {
	if s.closed {
		return false, errClosed
	}
	if s.e.sh != nil {
		changed, _, err := s.runSharedLocked(c, now)
		return changed, err
	}
	// The memory store does no I/O, so the memory mode takes mu for the
	// whole change.
	s.mu.Lock()
	defer s.mu.Unlock()
	wasPlaying := s.st.playing
	next, out, err := step(s.st, c, now, s.e.policy)
	if err != nil {
		return false, err
	}
	s.st = next
	if out.changed {
		s.saveLocked(context.Background())
	}
	s.emitLocked(out.effects)
	if out.changed {
		if s.st.playing != wasPlaying {
			s.e.setPlaying(s, s.st.playing)
		}
		s.reconcileTimersLocked()
	}
	return out.changed, nil
}

func (s *session) emitLocked(effects []effect) {
	o := s.e.out
	for _, f := range effects {
		switch f.kind {
		case effBroadcast:
			o.ToSession(s.st.id, f.event, f.payload)
		case effToMember:
			o.ToMember(f.member, f.event, f.payload)
		case effJoinRoom:
			o.JoinRoom(f.member, s.st.id)
		case effLeaveRoom:
			o.LeaveRoom(f.member, s.st.id)
		}
	}
}

// saveLocked writes the session through to the store. A failure is logged,
// not fatal: the session goes on in memory and FlushAll retries it. The
// caller holds op.
func (s *session) saveLocked(ctx context.Context) error {
	rec := s.st.record()
	if err := s.e.store.Save(ctx, rec); err != nil {
		s.e.log.Warn("saving session failed", "session", s.st.id, "version", rec.Version, "err", err)
		return err
	}
	s.savedVersion = rec.Version
	return nil
}

// flush saves the session if its last change did not reach the store.
func (s *session) flush(ctx context.Context) error {
	s.op.Lock()
	defer s.op.Unlock()
	if s.closed || s.savedVersion >= s.st.version {
		return nil
	}
	return s.saveLocked(ctx)
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
	s.op.Lock()
	defer s.op.Unlock()
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
	s.op.Lock()
	if s.closed || s.recovery[a.member] != a {
		s.op.Unlock()
		return
	}
	s.mu.Lock()
	delete(s.recovery, a.member)
	s.mu.Unlock()
	removed, _ := s.runLocked(leaveCmd{member: a.member, onlyIfDetached: true, reason: ReasonLeaderDisconnected}, s.e.clk.Now())
	s.op.Unlock()
	if removed {
		// Outside the session lock: the engine lock is never taken while
		// holding a session lock.
		s.e.unindex(a.member, s)
	}
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

// expireIfIdle closes the session when no member is connected and nothing
// changed for idle. The caller holds the engine lock and removes it from
// the map; it returns the ids of the members that were still in it.
func (s *session) expireIfIdle(now time.Time, idle time.Duration) (members []string, expired bool) {
	if !s.op.TryLock() {
		return nil, false // a command is under way: not idle
	}
	defer s.op.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.st.connectedCount() > 0 || now.UnixMilli()-s.st.lastActive < s.st.idleFor(idle).Milliseconds() {
		return nil, false
	}
	s.closeLocked()
	for _, m := range s.st.members {
		s.e.out.LeaveRoom(m.id, s.st.id)
		members = append(members, m.id)
	}
	return members, true
}

// closeLocked retires the session: no timer fires for it and it leaves
// the playing set. The caller holds op and mu and removes it from the
// engine.
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
