package events

import (
	"encoding/json"
	"strings"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/socketio"
	"github.com/bandsync/bandsync/internal/store"
)

// The engine sends each event a session's change produces under its id in
// the session's log. With a shared recovery store (Redis) that id is the
// offset a client presents to recover, and the store replays from the log;
// otherwise the transport records the event and numbers it itself.
var _ engine.StreamOutbox = outbox{}

func (o outbox) ToSessionAt(sessionID, event string, payload any, offset string) {
	if !o.srv.SharedRecovery() {
		o.ToSession(sessionID, event, payload)
		return
	}
	if f, ok := recordedFrame(event, payload, offset); ok {
		o.srv.BroadcastFrame(RoomName(sessionID), f)
	}
}

func (o outbox) ToMemberAt(memberID, event string, payload any, offset string) {
	if !o.srv.SharedRecovery() {
		o.ToMember(memberID, event, payload)
		return
	}
	if c, ok := o.srv.Conn(memberID); ok {
		if f, ok := recordedFrame(event, payload, offset); ok {
			c.Send(f)
		}
	}
}

func recordedFrame(event string, payload any, offset string) (*socketio.Frame, bool) {
	body, ok := payload.(json.RawMessage)
	if !ok && payload != nil {
		var err error
		if body, err = json.Marshal(payload); err != nil {
			return nil, false
		}
	}
	seq, _ := store.LogSeq(offset)
	return socketio.EncodeRecorded(event, body, offset, seq), true
}

// SessionOfRoom is the inverse of RoomName: ok is false for a room that is
// not a session's.
func SessionOfRoom(room string) (sessionID string, ok bool) {
	return strings.CutPrefix(room, roomPrefix)
}

// sessionsOf returns the session ids among a socket's rooms.
func sessionsOf(rooms []string) []string {
	var ids []string
	for _, r := range rooms {
		if id, ok := SessionOfRoom(r); ok {
			ids = append(ids, id)
		}
	}
	return ids
}
