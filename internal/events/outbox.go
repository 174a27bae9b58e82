package events

import (
	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/socketio"
)

// roomPrefix keeps session rooms apart from socket ids, which Socket.IO
// also treats as rooms.
const roomPrefix = "session:"

// RoomName is the transport room of a session.
func RoomName(sessionID string) string { return roomPrefix + sessionID }

// outbox delivers the engine's events through the Socket.IO server.
type outbox struct{ srv *socketio.Server }

var _ engine.Outbox = outbox{}

func (o outbox) JoinRoom(memberID, sessionID string) {
	if c, ok := o.srv.Conn(memberID); ok {
		c.Join(RoomName(sessionID))
	}
}

func (o outbox) LeaveRoom(memberID, sessionID string) {
	if c, ok := o.srv.Conn(memberID); ok {
		c.Leave(RoomName(sessionID))
	}
}

func (o outbox) ToSession(sessionID, event string, payload any) {
	_ = o.srv.Broadcast(RoomName(sessionID), event, payload)
}

func (o outbox) ToSessionVolatile(sessionID, event string, payload any) {
	_ = o.srv.BroadcastVolatile(RoomName(sessionID), event, payload)
}

func (o outbox) ToMember(memberID, event string, payload any) {
	if c, ok := o.srv.Conn(memberID); ok {
		_ = c.Emit(event, payload)
	}
}

func (o outbox) Disconnect(memberID string) {
	if c, ok := o.srv.Conn(memberID); ok {
		c.Disconnect()
	}
}
