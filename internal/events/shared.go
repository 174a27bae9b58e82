package events

import (
	"encoding/json"
	"strings"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/socketio"
	"github.com/bandsync/bandsync/internal/store"
)

// With a shared store (Redis) a session's events are recorded in the
// session's log by the store, and the offset a client must present to
// recover is the entry's log id; these methods send an event under that
// offset.
var _ engine.StreamOutbox = outbox{}

func (o outbox) ToSessionAt(sessionID, event string, payload json.RawMessage, offset string) {
	o.srv.BroadcastFrame(RoomName(sessionID), recordedFrame(event, payload, offset))
}

func (o outbox) ToMemberAt(memberID, event string, payload json.RawMessage, offset string) {
	if c, ok := o.srv.Conn(memberID); ok {
		c.Send(recordedFrame(event, payload, offset))
	}
}

func recordedFrame(event string, payload json.RawMessage, offset string) *socketio.Frame {
	seq, _ := store.LogSeq(offset)
	return socketio.EncodeRecorded(event, payload, offset, seq)
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
