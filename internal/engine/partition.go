package engine

// This file is what a copy does when its instance is cut off from a
// shared store for long, and how it rejoins the store's state after.
//
// While the store is unavailable, a session with members on other
// instances refuses its members' changes (runLocalLocked), so nothing a
// client is told succeeded can be lost. That alone still leaves two
// leaders when the outage outlasts presence: the others take this
// instance for dead, detach its members and, LEADER_GRACE_MS later, hand
// the lead to one of their own, while this copy still names the old
// leader. So once the store says this instance's presence has lapsed
// (store.Presence), before the others can even detach its members, the
// copy stops naming a leader (fence). When the store returns, the stored
// state wins over the copy (healLocked).

import (
	"errors"
	"math"
	"time"

	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/store"
)

// FenceIfCutOff fences every session with members on other instances when
// this instance has been cut off from the store for so long that the
// others may take it for dead. Run calls it every sweepEvery; tests call
// it directly.
func (e *Engine) FenceIfCutOff() {
	p, ok := e.store.(store.Presence)
	if !ok || e.store.Available() || !p.PresenceLapsed() {
		return
	}
	for _, s := range e.all() {
		s.fence()
	}
}

// fence stops the copy naming a leader: its members are told the lead is
// vacant ("Waiting for leader…"), as they would be if their leader's
// connection had dropped, which it has as far as the rest of the band
// goes. The fence is this copy's alone: the store never gets it.
func (s *session) fence() {
	s.lock()
	defer s.unlock()
	e := s.e
	if s.closed || s.fenced || e.store.Available() || !s.spansInstances() {
		return
	}
	pre := s.st.clone()
	next, out, _ := step(s.st, fenceCmd{}, e.clk.Now(), e.policy)
	s.mu.Lock()
	s.performMuLocked(opsOf(out.effects))
	if out.changed {
		s.adoptMuLocked(next)
	}
	s.mu.Unlock()
	s.fenced, s.dirty, s.preFence = true, true, &pre
	e.log.Warn("cut off from the store for longer than the other instances wait before taking this one for dead; "+
		"the session's lead is vacant here until the store is back", "session", s.st.id, "leader", pre.leader)
}

// fenceCmd vacates the lead in this copy only. The leader term is kept:
// the copy is never written back, and a term is the store's to advance.
type fenceCmd struct{}

func (fenceCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	if s.leader == "" {
		return out, nil
	}
	prev := s.leader
	s.touch(now)
	out.changed = true
	if i := s.find(prev); i >= 0 {
		s.members[i].role = RoleFollower
	}
	s.leader, s.leaderClaimed = "", false
	s.message = statusNoLeader
	out.broadcast(protocol.EventRoleChanged, RoleChanged{SocketID: prev, Role: RoleFollower, PreviousLeader: optString(prev),
		Reason: ReasonLeaderDisconnected, Timestamp: epochMs(now)})
	out.broadcast(protocol.EventSnapshot, s.snapshot(now))
	return out, nil
}

// healCmd commits the state adopted from the store again, at a version
// above seen, the highest this instance's members have been sent: clients
// (the SDK, the mobile app) drop a snapshot older than one they have, so
// the stored state must come to them newer than what they saw from the
// copy while it was cut off.
type healCmd struct{ seen uint64 }

func (c healCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	s.version = max(s.version, c.seen)
	s.touch(now)
	out.changed = true
	out.broadcast(protocol.EventRoomStats, s.roomStats(now))
	out.broadcast(protocol.EventSnapshot, s.snapshot(now))
	return out, nil
}

// healLocked brings a copy that changed while the store was away, of a
// session with members on other instances, back to the store's state.
// The copy is not written back over the stored record, as a session of
// this instance alone is: the others may have changed the session
// meanwhile (detached this instance's members, elected a leader, admitted
// a member), and a higher version in the copy would only say that more
// happened here, not later. By the rule of runLocalLocked nothing a
// client was told succeeded is in the copy but the presence of this
// instance's sockets and the fence. So the stored state is adopted,
// committed again above every version the members here have seen
// (healCmd), and the presence of the sockets here is replayed on it:
// members that left are removed, dropped ones detached, and connected
// ones re-attached (by resyncLocked). The caller holds op; the store is
// available and the session followed.
func (s *session) healLocked() bool {
	e, sh := s.e, s.e.store
	ctx, cancel := storeCtx()
	rec, found, err := sh.Load(ctx, s.st.id)
	cancel()
	if err != nil {
		return false
	}
	retry := s.landPendingLocked()
	seen := s.st.version
	here := make(map[string]bool) // this instance's members in the copy: connected?
	for _, m := range s.st.members {
		if m.inst == e.inst {
			here[m.id] = m.connected
		}
	}
	switch {
	case found:
		s.adoptRecordLocked(rec, true)
	case s.preFence != nil:
		// The store came back empty: this copy is the best there is,
		// with the lead it had before the fence.
		s.adoptLocked(s.st.unfence(*s.preFence))
	}
	e.log.Info("session rejoined the stored state after the store was unavailable", "session", s.st.id,
		"fenced", s.fenced, "seen", seen, "storedVersion", rec.Version, "found", found)
	s.dirty, s.fenced, s.preFence = false, false, nil
	if _, err := s.runLocked(healCmd{seen: seen}, e.clk.Now()); err != nil {
		e.log.Warn("committing the healed session failed", "session", s.st.id, "err", err)
	}
	var replay []command
	for _, m := range s.st.members {
		if m.inst != e.inst {
			continue
		}
		switch connected, ok := here[m.id]; {
		case !ok:
			replay = append(replay, leaveCmd{member: m.id, reason: ReasonLeaderLeft})
		case !connected && m.connected:
			replay = append(replay, detachCmd{member: m.id, inst: e.inst})
		}
	}
	for _, c := range replay {
		if _, err := s.runLocked(c, e.clk.Now()); err != nil {
			e.log.Warn("replaying a member's presence on the healed session failed", "session", s.st.id, "err", err)
		}
	}
	if retry != nil {
		// Evaluated again at the instant it was acknowledged: a seek
		// lands where its leader was told it did, not seconds behind,
		// anchored at the heal.
		_, err := s.runLocked(retry.cmd, retry.at)
		if err != nil && retry.rec.LeaderID == retry.before.LeaderID && retry.rec.LeaderTerm == retry.before.LeaderTerm {
			// A leader's playback command refused on the stored state
			// (the lead passed on meanwhile): its playback still lands
			// if nobody else moved playback since.
			var landed bool
			landed, err = s.runLocked(latePlaybackCmd{before: retry.before, rec: retry.rec}, e.clk.Now())
			if err == nil && !landed && !samePlayback(s.st.record(), retry.rec) {
				err = errors.New("playback was moved on by another leader meanwhile")
			}
		}
		if err != nil {
			e.log.Warn("a change acknowledged while the store went away no longer applies to the stored state; lost",
				"session", s.st.id, "err", err)
		}
	}
	return true
}

// latePlaybackCmd lands the playback a leader's command set before the
// store went away (its commit under way, its outcome unknown, and it was
// acknowledged) when the stored state has meanwhile changed only in ways
// that leave playback alone: the others detached this instance's members
// and may have handed the lead on, which is why the command itself is
// refused on the stored state. It was the leader's word when it was
// given, before any other; the band plays on from it.
type latePlaybackCmd struct{ before, rec store.SessionRecord }

func (c latePlaybackCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	cur := s.record()
	if !samePlayback(cur, c.before) || samePlayback(cur, c.rec) {
		return out, nil // the others moved playback on, or it is in effect
	}
	at := stateFromRecord(c.rec, now)
	s.touch(now)
	out.changed = true
	s.tempo, s.playing, s.anchorPos, s.anchorAt, s.beatAnchor, s.startsAt =
		at.tempo, at.playing, at.anchorPos, at.anchorAt, at.beatAnchor, at.startsAt
	out.broadcast(protocol.EventSnapshot, s.snapshot(now))
	return out, nil
}

// samePlayback compares two records' playback. Instants are compared to
// a millisecond: a record rebuilt into a state and back (stateFromRecord,
// record) keeps them only to float precision.
func samePlayback(a, b store.SessionRecord) bool {
	near := func(x, y float64) bool { return math.Abs(x-y) < 1 }
	return a.Tempo == b.Tempo && a.IsPlaying == b.IsPlaying && near(a.AnchorPositionMs, b.AnchorPositionMs) &&
		near(a.AnchorEpochMs, b.AnchorEpochMs) && near(a.BeatAnchor, b.BeatAnchor) && near(a.StartsAt, b.StartsAt)
}

// pendingCommit is a command whose commit was under way when the store
// went away, and the record it would have stored.
type pendingCommit struct {
	cmd         command
	at          time.Time           // when it was evaluated and acknowledged
	rec, before store.SessionRecord // the record it would store, and the one it was evaluated on
	prev, term  uint64
}

// landPendingLocked makes sure the commit under way when the store went
// away is in effect: it commits the record now if the stored one is still
// the one it was evaluated on, and recognises it if it had landed. If the
// others changed the session meanwhile, it is returned, for its command
// to be evaluated again on the stored state (it did not land, so running
// it again does not repeat it).
func (s *session) landPendingLocked() *pendingCommit {
	p := s.pending
	s.pending = nil
	if p == nil {
		return nil
	}
	ctx, cancel := storeCtx()
	res, err := s.e.store.Commit(ctx, p.rec, p.prev, p.term, nil)
	cancel()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrConflict) && res.Found && sameChange(res.Current, p.rec):
		return nil
	}
	return p
}

// sameChange reports whether the stored record is the one a commit wrote:
// the change's instant and the fields a command sets identify it.
func sameChange(a, b store.SessionRecord) bool {
	return a.Version == b.Version && a.LeaderTerm == b.LeaderTerm && a.LastActiveAt == b.LastActiveAt &&
		a.AnchorEpochMs == b.AnchorEpochMs && a.AnchorPositionMs == b.AnchorPositionMs && a.Tempo == b.Tempo &&
		a.IsPlaying == b.IsPlaying && a.LeaderID == b.LeaderID && a.Message == b.Message && len(a.Members) == len(b.Members)
}

// unfence returns s with the lead pre had, if its leader is still a
// member.
func (s sessionState) unfence(pre sessionState) sessionState {
	s = s.clone()
	i := s.find(pre.leader)
	if s.leader != "" || i < 0 {
		return s
	}
	s.leader, s.leaderClaimed, s.message = pre.leader, pre.leaderClaimed, pre.message
	s.members[i].role = RoleLeader
	return s
}
