package engine

import (
	"errors"
	"time"

	"github.com/bandsync/bandsync/internal/protocol"
)

// evictDetached makes room in a full session for a connected member by
// removing one that dropped and has not come back (not the leader, whose
// grace period is the band's to wait out). A dropped phone must not lock
// a present one out; the dropped one re-joins on reconnect like any new
// member. It reports whether a member was removed.
func (s *sessionState) evictDetached(out *outcome, now time.Time) bool {
	for i, m := range s.members {
		if m.connected || m.id == s.leader {
			continue
		}
		s.members = append(s.members[:i], s.members[i+1:]...)
		out.room(effLeaveRoom, m.id)
		out.broadcast(protocol.EventUserLeft, UserLeft{SocketID: m.id, MemberCount: len(s.members), NewLeader: optString(s.leader)})
		return true
	}
	return false
}

// hasRoom reports whether a new member may join: below maxMembers, or a
// detached member could make way.
func (s *sessionState) hasRoom() bool {
	if s.maxMembers <= 0 || len(s.members) < s.maxMembers {
		return true
	}
	for _, m := range s.members {
		if !m.connected && m.id != s.leader {
			return true
		}
	}
	return false
}

// CreateCheck decides whether a join may create a session that does not
// exist yet (the events layer's per-socket and per-address limits); a
// non-nil error is the join's answer.
type CreateCheck func() error

func (f CreateCheck) check() error {
	if f == nil {
		return nil
	}
	return f()
}

// notMember reports a NOT_IN_SESSION refusal: the index still pointed at
// a session the member was evicted from, and the entry can go.
func notMember(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == protocol.CodeNotInSession
}
