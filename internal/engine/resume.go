package engine

// This file is handing over and coming back (docs/protocol.md):
// transfer_leadership, and the private member token that lets a new socket
// (a reloaded page, a restarted app) take its member's place back.

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"time"

	"github.com/bandsync/bandsync/internal/protocol"
)

// memberTokenBytes is the token's randomness: 192 bits, above the
// protocol's 128.
const memberTokenBytes = 24

// errNoResume reports a token that does not (or no longer) match; the
// join then goes on as an ordinary one.
var errNoResume = errors.New("engine: no member to resume")

func newMemberToken() string {
	b := make([]byte, memberTokenBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

func tokenMatches(have, presented string) bool {
	return have != "" && subtle.ConstantTimeCompare([]byte(have), []byte(presented)) == 1
}

// MemberToken returns memberID's private token in the session, "" when it
// is not a member. The handlers send it to that member only.
func (e *Engine) MemberToken(memberID, sessionID string) string {
	s := e.lookup(sessionID)
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := s.st.find(memberID); i >= 0 {
		return s.st.members[i].token
	}
	return ""
}

// memberByToken returns the member holding token, "" when none does.
func (s *session) memberByToken(token string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.st.members {
		if tokenMatches(m.token, token) {
			return m.id
		}
	}
	return ""
}

// resume puts memberID in the place of the member whose token it
// presents. ok is false when there is no such member (a wrong or expired
// token): the caller then joins it as an ordinary member.
func (e *Engine) resume(memberID, sessionID, token string, mayCreate CreateCheck) (st State, ok bool, err error) {
	s, err := e.sessionFor(sessionID, mayCreate)
	if err != nil {
		return State{}, false, err
	}
	prev := e.memberSession(memberID)
	if prev == s {
		return State{}, false, nil // already in: an ordinary re-join
	}
	old := s.memberByToken(token)
	if old == "" {
		return State{}, false, nil
	}
	if prev != nil {
		_ = e.leave(prev, memberID)
	}
	st, err = s.run(resumeCmd{member: memberID, old: old, token: token, inst: e.inst}, e.clk.Now())
	if err != nil {
		return State{}, false, nil
	}
	e.mu.Lock()
	e.index[memberID] = s
	e.mu.Unlock()
	e.unindex(old, s)
	e.log.Info("member resumed with its token", "session", sessionID, "member", memberID, "previousSocket", old)
	return st, true, nil
}

// resumeCmd moves member old's place (name, role, seniority, token) to the
// socket member. A leader is leader again at once: its grace period ends
// with no role_changed, because nothing changed for the band. The old
// socket, if still connected, leaves the session's room.
type resumeCmd struct {
	member, old, token, inst string
}

func (c resumeCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	i := s.find(c.old)
	if i < 0 || !tokenMatches(s.members[i].token, c.token) || s.find(c.member) >= 0 {
		return out, errNoResume
	}
	s.touch(now)
	out.changed = true
	m := &s.members[i]
	m.id, m.connected, m.inst = c.member, true, c.inst
	if s.leader == c.old {
		s.leader = c.member
		s.leaderTerm++ // a different socket leads; the same member does
	}
	out.room(effLeaveRoom, c.old)
	out.room(effJoinRoom, c.member)
	out.presenceChanged(s, now)
	return out, nil
}

// transferCmd hands leadership to a named, connected member.
type transferCmd struct{ member, target string }

func (c transferCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	if err := requireLeader(s, c.member, "hand over leadership"); err != nil {
		return out, err
	}
	if c.target == c.member {
		out.echo(s, c.member, now, "", nil)
		return out, nil
	}
	i := s.find(c.target)
	switch {
	case i < 0:
		return out, newError(protocol.CodeInvalidPayload, "no member %s in session %q to hand leadership to", quoteShort(c.target), s.id)
	case !s.members[i].connected:
		return out, newError(protocol.CodeInvalidPayload, "%s (%s) is not connected; leadership goes only to a connected member",
			c.target, s.members[i].name)
	}
	s.touch(now)
	out.changed = true
	// A lead handed to a named member is protected as if it had asked: the
	// band chose it, and someone else's set_role must not undo that.
	s.claimLead(c.target)
	s.message = statusNowLeading(s.leaderName())
	out.broadcast(protocol.EventRoleChanged, RoleChanged{SocketID: c.target, Role: RoleLeader, PreviousLeader: optString(c.member),
		Reason: ReasonHandover, Timestamp: epochMs(now)})
	out.broadcast(protocol.EventSnapshot, s.snapshot(now))
	return out, nil
}

// TransferLeadership hands leadership from the leader memberID to the
// connected member target.
func (e *Engine) TransferLeadership(memberID, sessionID, target string) (State, error) {
	return e.command(sessionID, transferCmd{member: memberID, target: target})
}
