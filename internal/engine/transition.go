package engine

import "time"

// This file holds the state transitions as pure functions: given a session
// value, a command and the current instant they return the next value and
// the messages to send, and touch nothing else. The session type (session.go)
// runs them under its lock and performs the effects; a store-backed engine
// can run the same functions inside a compare-and-set retry loop.

// policy is the part of the configuration transitions depend on.
type policy struct {
	openLeadership bool
}

type effectKind uint8

const (
	effBroadcast effectKind = iota // Outbox.ToSession
	effToMember                    // Outbox.ToMember
	effJoinRoom                    // Outbox.JoinRoom
	effLeaveRoom                   // Outbox.LeaveRoom
)

type effect struct {
	kind    effectKind
	member  string
	event   string
	payload any
}

// outcome is what a transition produced. changed is false for a command
// that was accepted but had nothing to change; then the state is untouched
// and the version stays.
type outcome struct {
	changed bool
	effects []effect
}

func (o *outcome) broadcast(event string, payload any) {
	o.effects = append(o.effects, effect{kind: effBroadcast, event: event, payload: payload})
}

func (o *outcome) toMember(memberID, event string, payload any) {
	o.effects = append(o.effects, effect{kind: effToMember, member: memberID, event: event, payload: payload})
}

func (o *outcome) room(kind effectKind, memberID string) {
	o.effects = append(o.effects, effect{kind: kind, member: memberID})
}

// command is one state transition. apply receives a private copy of the
// state; on error or an unchanged outcome the copy is discarded, so apply
// must validate and check permissions before it modifies anything it would
// not want kept, and call s.touch exactly once when it changes something.
type command interface {
	apply(s *sessionState, now time.Time, p policy) (outcome, error)
}

// step runs c on s. It never modifies s.
func step(s sessionState, c command, now time.Time, p policy) (sessionState, outcome, error) {
	next := s.clone()
	out, err := c.apply(&next, now, p)
	if err != nil {
		return s, outcome{}, err
	}
	if !out.changed {
		return s, out, nil
	}
	return next, out, nil
}

func requireMember(s *sessionState, memberID string) (int, error) {
	i := s.find(memberID)
	if i < 0 {
		return -1, notInSession(s.id)
	}
	return i, nil
}

func requireLeader(s *sessionState, memberID, action string) error {
	if _, err := requireMember(s, memberID); err != nil {
		return err
	}
	switch s.leader {
	case memberID:
		return nil
	case "":
		return newError(CodeNotLeader, "only the leader can %s and session %q has none; claim it with set_role leader", action, s.id)
	default:
		return newError(CodeNotLeader, "only the leader (%s) can %s", s.leader, action)
	}
}

type joinCmd struct {
	member, name, role string
	token              string // the new member's resume token (resume.go)
}

// A member already in the session only gets a fresh snapshot: the mobile
// app re-sends join_session on every reconnect. A new member leads when
// leadership is vacant and it asked to lead or no other member is connected
// (an empty session); with open leadership, asking to lead takes over.
func (c joinCmd) apply(s *sessionState, now time.Time, p policy) (outcome, error) {
	var out outcome
	if s.find(c.member) >= 0 {
		out.toMember(c.member, EventSnapshot, s.snapshot(now))
		return out, nil
	}
	if s.maxMembers > 0 && len(s.members) >= s.maxMembers {
		return out, newError(CodeSessionFull, "session %q is full: at most %d members", s.id, s.maxMembers)
	}
	s.touch(now)
	out.changed = true
	m := member{id: c.member, name: c.name, role: RoleFollower, joinedAt: now.UnixMilli(), connected: true, token: c.token}
	s.members = append(s.members, m)
	previous := s.leader
	takeover := false
	switch {
	case s.leader == "" && (c.role == RoleLeader || s.connectedCount() == 1):
		s.setLeader(c.member)
	case s.leader != "" && c.role == RoleLeader && p.openLeadership:
		s.setLeader(c.member)
		takeover = true
	}
	out.broadcast(EventUserJoined, UserJoined{Member: s.members[len(s.members)-1].wire(), MemberCount: len(s.members)})
	if takeover {
		out.broadcast(EventRoleChanged, RoleChanged{SocketID: c.member, Role: RoleLeader,
			PreviousLeader: optString(previous), Reason: ReasonTakeover, Timestamp: epochMs(now)})
	}
	out.broadcast(EventRoomStats, s.roomStats(now))
	snap := s.snapshot(now)
	out.broadcast(EventSnapshot, snap)
	// The joiner enters the room after the broadcasts so it gets exactly
	// one snapshot, addressed to it.
	out.room(effJoinRoom, c.member)
	out.toMember(c.member, EventSnapshot, snap)
	return out, nil
}

type leaveCmd struct {
	member string
	// onlyIfDetached makes the leave a no-op for a connected member: the
	// recovery timer fired but the member came back meanwhile.
	onlyIfDetached bool
	// reason for role_changed when the leaver led.
	reason string
}

// A departing leader hands over at once to the most senior connected member.
func (c leaveCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	i, err := requireMember(s, c.member)
	if err != nil {
		return out, err
	}
	if c.onlyIfDetached && s.members[i].connected {
		return out, nil
	}
	s.touch(now)
	out.changed = true
	wasLeader := s.leader == c.member
	s.members = append(s.members[:i], s.members[i+1:]...)
	if wasLeader {
		s.setLeader(s.mostSenior(""))
	}
	out.room(effLeaveRoom, c.member)
	out.broadcast(EventUserLeft, UserLeft{SocketID: c.member, MemberCount: len(s.members), NewLeader: optString(s.leader)})
	if wasLeader && s.leader != "" {
		out.broadcast(EventRoleChanged, RoleChanged{SocketID: s.leader, Role: RoleLeader,
			PreviousLeader: optString(c.member), Reason: c.reason, Timestamp: epochMs(now)})
	}
	out.broadcast(EventRoomStats, s.roomStats(now))
	out.broadcast(EventSnapshot, s.snapshot(now))
	return out, nil
}

type setRoleCmd struct {
	member, role string
}

func (c setRoleCmd) apply(s *sessionState, now time.Time, p policy) (outcome, error) {
	var out outcome
	if _, err := requireMember(s, c.member); err != nil {
		return out, err
	}
	var changed RoleChanged
	switch {
	case c.role == RoleLeader && s.leader == c.member, c.role == RoleFollower && s.leader != c.member:
		return out, nil // already so
	case c.role == RoleLeader:
		previous := s.leader
		reason := ReasonClaimed
		if previous != "" {
			if !p.openLeadership {
				return out, newError(CodeNotLeader,
					"%s leads session %q; leadership can only be claimed while vacant", previous, s.id)
			}
			reason = ReasonTakeover
		}
		s.setLeader(c.member)
		changed = RoleChanged{SocketID: c.member, Role: RoleLeader, PreviousLeader: optString(previous), Reason: reason}
	default: // the leader steps down; leadership stays vacant until claimed
		s.setLeader("")
		changed = RoleChanged{SocketID: c.member, Role: RoleFollower, PreviousLeader: optString(c.member), Reason: ReasonSteppedDown}
	}
	s.touch(now)
	out.changed = true
	changed.Timestamp = epochMs(now)
	out.broadcast(EventRoleChanged, changed)
	out.broadcast(EventSnapshot, s.snapshot(now))
	return out, nil
}

type setTempoCmd struct {
	member string
	tempo  float64
}

// The beat grid is re-anchored at the current position and beat, so the new
// grid passes through the beat the band is on at the moment of change.
func (c setTempoCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	if err := requireLeader(s, c.member, "set the tempo"); err != nil {
		return out, err
	}
	if c.tempo == s.tempo {
		return out, nil
	}
	s.touch(now)
	out.changed = true
	pos := s.positionAt(now)
	s.reanchor(now, pos, s.beatFor(pos))
	s.tempo = c.tempo
	out.broadcast(EventSnapshot, s.snapshot(now))
	return out, nil
}

type playCmd struct {
	member  string
	delayMs float64
}

// Play while already playing changes nothing (and keeps any scheduled
// start): a second tap must not restart the count-in for the band.
func (c playCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	if err := requireLeader(s, c.member, "start playback"); err != nil {
		return out, err
	}
	if s.playing {
		return out, nil
	}
	s.touch(now)
	out.changed = true
	start := now.Add(msDuration(c.delayMs))
	// Paused, the position is anchorPos; the anchor moves to the start
	// instant so the position holds until then.
	s.playing = true
	s.anchorAt = start
	s.startsAt = start
	pos := s.positionAt(now)
	out.broadcast(EventPlay, PlayEvent{SessionID: s.id, TempoBpm: s.tempo, Position: pos, PositionMs: pos,
		ServerTimestamp: epochMs(now), StartsAt: epochMs(start)})
	out.broadcast(EventSnapshot, s.snapshot(now))
	return out, nil
}

type pauseCmd struct{ member string }

// Pause while paused changes nothing.
func (c pauseCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	if err := requireLeader(s, c.member, "pause"); err != nil {
		return out, err
	}
	if !s.playing {
		return out, nil
	}
	s.touch(now)
	out.changed = true
	pos := s.positionAt(now)
	beat := s.beatFor(pos)
	s.playing = false
	s.startsAt = time.Time{}
	s.reanchor(now, pos, beat)
	out.broadcast(EventPause, s.transport(now))
	out.broadcast(EventSnapshot, s.snapshot(now))
	return out, nil
}

type seekCmd struct {
	member   string
	position float64
}

// Seek keeps playing or paused as it was; the beat at the new position is
// extrapolated on the current grid. A seek during a scheduled start keeps
// the start instant.
func (c seekCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	if err := requireLeader(s, c.member, "seek"); err != nil {
		return out, err
	}
	s.touch(now)
	out.changed = true
	s.reanchor(now, c.position, s.beatFor(c.position))
	out.broadcast(EventSeek, s.transport(now))
	out.broadcast(EventSnapshot, s.snapshot(now))
	return out, nil
}

type stopCmd struct{ member string }

// Stop pauses and returns position and beat to 0; when already there it
// changes nothing.
func (c stopCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	if err := requireLeader(s, c.member, "stop"); err != nil {
		return out, err
	}
	if !s.playing && s.anchorPos == 0 && s.beatAnchor == 0 {
		return out, nil
	}
	s.touch(now)
	out.changed = true
	s.playing = false
	s.startsAt = time.Time{}
	s.reanchor(now, 0, 0)
	out.broadcast(EventStop, StopEvent{SessionID: s.id, ServerTimestamp: epochMs(now)})
	out.broadcast(EventSnapshot, s.snapshot(now))
	return out, nil
}

type messageCmd struct {
	member, message string
}

func (c messageCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	if _, err := requireMember(s, c.member); err != nil {
		return out, err
	}
	if c.message == s.message {
		return out, nil
	}
	s.touch(now)
	out.changed = true
	s.message = c.message
	out.broadcast(EventSnapshot, s.snapshot(now))
	return out, nil
}

// connectCmd marks a member's socket lost (connected=false) or recovered.
// A detached leader keeps leadership; the session's grace timer decides.
type connectCmd struct {
	member    string
	connected bool
}

func (c connectCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	i, err := requireMember(s, c.member)
	if err != nil {
		return out, err
	}
	if s.members[i].connected == c.connected {
		return out, nil
	}
	s.touch(now)
	out.changed = true
	s.members[i].connected = c.connected
	out.broadcast(EventSnapshot, s.snapshot(now))
	return out, nil
}

// graceExpiredCmd ends a detached leader's grace period: the most senior
// connected member leads, or leadership becomes vacant.
type graceExpiredCmd struct{ leader string }

func (c graceExpiredCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	i := s.find(c.leader)
	if s.leader != c.leader || i < 0 || s.members[i].connected {
		return out, nil // re-attached, left or replaced meanwhile
	}
	s.touch(now)
	out.changed = true
	s.setLeader(s.mostSenior(c.leader))
	changed := RoleChanged{SocketID: s.leader, Role: RoleLeader, PreviousLeader: optString(c.leader),
		Reason: ReasonLeaderDisconnected, Timestamp: epochMs(now)}
	if s.leader == "" {
		changed.SocketID, changed.Role = c.leader, RoleFollower
	}
	out.broadcast(EventRoleChanged, changed)
	out.broadcast(EventSnapshot, s.snapshot(now))
	return out, nil
}
