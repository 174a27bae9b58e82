package engine

import (
	"time"

	"github.com/bandsync/bandsync/internal/protocol"
)

// This file holds the state transitions as pure functions: given a session
// value, a command and the current instant they return the next value and
// the messages to send, and touch nothing else, so the pipeline
// (session.go) can run them again on a fresh copy when its compare-and-set
// commit loses a race.

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

// snapshot returns the last snapshot the outcome broadcasts, if any.
func (o *outcome) snapshot() *State {
	for i := len(o.effects) - 1; i >= 0; i-- {
		if f := &o.effects[i]; f.kind == effBroadcast && f.event == protocol.EventSnapshot {
			if st, ok := f.payload.(State); ok {
				return &st
			}
		}
	}
	return nil
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
		return newError(protocol.CodeNotLeader, "only the leader can %s and session %q has none; claim it with set_role leader", action, s.id)
	default:
		return newError(protocol.CodeNotLeader, "only the leader (%s) can %s", s.leader, action)
	}
}

// Status texts written to the session message when leadership changes,
// as the original server wrote them: the mobile app shows the message as
// its status line ("Waiting for session data..." while it is empty).
const (
	statusLeaderClaimed = "Leader connected"
	statusNoLeader      = "Waiting for leader…"
)

func statusLeading(name string) string    { return name + " is leading" }
func statusNowLeading(name string) string { return name + " is now leading" }

// leaderName is the display name of the current leader, "" when vacant.
func (s *sessionState) leaderName() string {
	if i := s.find(s.leader); i >= 0 {
		return s.members[i].name
	}
	return ""
}

// echo answers an accepted command that changed nothing: the sender gets
// the unchanged snapshot (and the transport event its command names), as
// the original server answered every command, because the mobile app and
// the original's clients use no acks and wait for that snapshot. The rest
// of the room gets nothing: nothing changed for them.
func (o *outcome) echo(s *sessionState, member string, now time.Time, event string, payload any) {
	if event != "" {
		o.toMember(member, event, payload)
	}
	o.toMember(member, protocol.EventSnapshot, s.snapshot(now))
}

// canClaim reports whether member may take the lead by asking: when it is
// vacant, held only by default (nobody asked for it), or leadership is open.
func (s *sessionState) canClaim(p policy) bool {
	return s.leader == "" || !s.leaderClaimed || p.openLeadership
}

type joinCmd struct {
	member, name, role string
	token              string // the new member's resume token (resume.go)
}

// A member already in the session only gets a fresh snapshot and room_stats:
// the mobile app re-sends join_session on every reconnect. A new member
// leads when it asked to lead and may claim it (canClaim), or by default when
// leadership is vacant and no other member is connected (an empty session).
func (c joinCmd) apply(s *sessionState, now time.Time, p policy) (outcome, error) {
	var out outcome
	if s.find(c.member) >= 0 {
		out.toMember(c.member, protocol.EventSnapshot, s.snapshot(now))
		out.toMember(c.member, protocol.EventRoomStats, s.roomStats(now))
		return out, nil
	}
	if s.maxMembers > 0 && len(s.members) >= s.maxMembers && !s.evictDetached(&out, now) {
		return out, newError(protocol.CodeSessionFull, "session %q is full: at most %d members", s.id, s.maxMembers)
	}
	s.touch(now)
	out.changed = true
	m := member{id: c.member, name: c.name, role: RoleFollower, joinedAt: now.UnixMilli(), connected: true, token: c.token}
	s.members = append(s.members, m)
	previous, previousClaimed := s.leader, s.leaderClaimed
	takeover := false
	switch {
	case c.role == RoleLeader && s.canClaim(p):
		takeover = previous != ""
		s.claimLead(c.member)
		s.message = statusLeading(c.name)
	case s.leader == "" && s.connectedCount() == 1:
		s.setLeader(c.member)
		s.message = statusLeading(c.name)
	}
	joined := UserJoined{Member: s.members[len(s.members)-1].wire(), MemberCount: s.connectedCount()}
	out.broadcast(protocol.EventUserJoined, joined)
	var changed RoleChanged
	if takeover {
		reason := ReasonClaimed
		if previousClaimed {
			reason = ReasonTakeover
		}
		changed = RoleChanged{SocketID: c.member, Role: RoleLeader,
			PreviousLeader: optString(previous), Reason: reason, Timestamp: epochMs(now)}
		out.broadcast(protocol.EventRoleChanged, changed)
	}
	stats := s.roomStats(now)
	out.broadcast(protocol.EventRoomStats, stats)
	snap := s.snapshot(now)
	out.broadcast(protocol.EventSnapshot, snap)
	// The joiner enters the room after the broadcasts so it gets each event
	// exactly once, addressed to it, in the original server's order: the
	// snapshot, then room_stats (the mobile app's only source of its member
	// count), then user_joined.
	out.room(effJoinRoom, c.member)
	out.toMember(c.member, protocol.EventSnapshot, snap)
	out.toMember(c.member, protocol.EventRoomStats, stats)
	out.toMember(c.member, protocol.EventUserJoined, joined)
	if takeover {
		out.toMember(c.member, protocol.EventRoleChanged, changed)
	}
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
		s.succeed("")
	}
	out.room(effLeaveRoom, c.member)
	out.broadcast(protocol.EventUserLeft, UserLeft{SocketID: c.member, MemberCount: s.connectedCount(), NewLeader: optString(s.leader)})
	if wasLeader && s.leader != "" {
		out.broadcast(protocol.EventRoleChanged, RoleChanged{SocketID: s.leader, Role: RoleLeader,
			PreviousLeader: optString(c.member), Reason: c.reason, Timestamp: epochMs(now)})
	}
	out.broadcast(protocol.EventRoomStats, s.roomStats(now))
	out.broadcast(protocol.EventSnapshot, s.snapshot(now))
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
	case c.role == RoleLeader && s.leader == c.member && s.leaderClaimed,
		c.role == RoleFollower && s.leader != c.member:
		out.echo(s, c.member, now, "", nil) // already so
		return out, nil
	case c.role == RoleLeader && s.leader == c.member:
		// A defaulted leader confirms its lead: now it is protected.
		s.leaderClaimed = true
		s.message = statusLeaderClaimed
		s.touch(now)
		out.changed = true
		out.broadcast(protocol.EventSnapshot, s.snapshot(now))
		return out, nil
	case c.role == RoleLeader:
		previous := s.leader
		if !s.canClaim(p) {
			return out, newError(protocol.CodeNotLeader,
				"%s leads session %q and asked to; leadership can be claimed only while vacant or held by default", previous, s.id)
		}
		reason := ReasonClaimed
		if previous != "" && s.leaderClaimed {
			reason = ReasonTakeover
		}
		s.claimLead(c.member)
		s.message = statusLeaderClaimed
		changed = RoleChanged{SocketID: c.member, Role: RoleLeader, PreviousLeader: optString(previous), Reason: reason}
	default: // the leader steps down; leadership stays vacant until claimed
		s.setLeader("")
		s.message = statusNoLeader
		changed = RoleChanged{SocketID: c.member, Role: RoleFollower, PreviousLeader: optString(c.member), Reason: ReasonSteppedDown}
	}
	s.touch(now)
	out.changed = true
	changed.Timestamp = epochMs(now)
	out.broadcast(protocol.EventRoleChanged, changed)
	out.broadcast(protocol.EventSnapshot, s.snapshot(now))
	return out, nil
}

// succeed hands the lead, by default, to the most senior connected member
// other than exclude, or leaves it vacant, and says so in the status text.
func (s *sessionState) succeed(exclude string) {
	s.setLeader(s.mostSenior(exclude))
	if s.leader == "" {
		s.message = statusNoLeader
		return
	}
	s.message = statusNowLeading(s.leaderName())
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
		out.echo(s, c.member, now, "", nil)
		return out, nil
	}
	s.touch(now)
	out.changed = true
	pos := s.positionAt(now)
	s.reanchor(now, pos, s.beatFor(pos))
	s.tempo = c.tempo
	out.broadcast(protocol.EventSnapshot, s.snapshot(now))
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
		pos := s.positionAt(now)
		out.echo(s, c.member, now, protocol.EventPlay, PlayEvent{SessionID: s.id, TempoBpm: s.tempo, Position: pos, PositionMs: pos,
			ServerTimestamp: epochMs(now), StartsAt: epochMs(s.startsAt)})
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
	out.broadcast(protocol.EventPlay, PlayEvent{SessionID: s.id, TempoBpm: s.tempo, Position: pos, PositionMs: pos,
		ServerTimestamp: epochMs(now), StartsAt: epochMs(start)})
	out.broadcast(protocol.EventSnapshot, s.snapshot(now))
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
		out.echo(s, c.member, now, protocol.EventPause, s.transport(now))
		return out, nil
	}
	s.touch(now)
	out.changed = true
	pos := s.positionAt(now)
	beat := s.beatFor(pos)
	s.playing = false
	s.startsAt = time.Time{}
	s.reanchor(now, pos, beat)
	out.broadcast(protocol.EventPause, s.transport(now))
	out.broadcast(protocol.EventSnapshot, s.snapshot(now))
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
	out.broadcast(protocol.EventSeek, s.transport(now))
	out.broadcast(protocol.EventSnapshot, s.snapshot(now))
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
		out.echo(s, c.member, now, protocol.EventStop, StopEvent{SessionID: s.id, ServerTimestamp: epochMs(now)})
		return out, nil
	}
	s.touch(now)
	out.changed = true
	s.playing = false
	s.startsAt = time.Time{}
	s.reanchor(now, 0, 0)
	out.broadcast(protocol.EventStop, StopEvent{SessionID: s.id, ServerTimestamp: epochMs(now)})
	out.broadcast(protocol.EventSnapshot, s.snapshot(now))
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
		out.echo(s, c.member, now, "", nil)
		return out, nil
	}
	s.touch(now)
	out.changed = true
	s.message = c.message
	out.broadcast(protocol.EventSnapshot, s.snapshot(now))
	return out, nil
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
// A detached leader keeps leadership; the session's grace timer decides. A
// member that has meanwhile recovered on another instance stays attached.
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

// presenceChanged broadcasts a change of who is connected: room_stats, since
// the live member count changed and the mobile app reads it only from there,
// then the snapshot.
func (o *outcome) presenceChanged(s *sessionState, now time.Time) {
	o.broadcast(protocol.EventRoomStats, s.roomStats(now))
	o.broadcast(protocol.EventSnapshot, s.snapshot(now))
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
	s.succeed(c.leader)
	changed := RoleChanged{SocketID: s.leader, Role: RoleLeader, PreviousLeader: optString(c.leader),
		Reason: ReasonLeaderDisconnected, Timestamp: epochMs(now)}
	if s.leader == "" {
		changed.SocketID, changed.Role = c.leader, RoleFollower
	}
	out.broadcast(protocol.EventRoleChanged, changed)
	out.broadcast(protocol.EventSnapshot, s.snapshot(now))
	return out, nil
}
