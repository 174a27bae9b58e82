package engine

// Outbox is everything the engine needs from the connection layer. The
// transport adapter (internal/events) implements it on top of
// internal/socketio; tests implement it with a recorder.
//
// Every call is non-blocking: the transport encodes the payload once and
// queues the same bytes to each member's writer, so the engine may call
// these while holding a session's lock, which is what keeps every member's
// view of a session in the order the session changed.
type Outbox interface {
	// JoinRoom and LeaveRoom put a member's socket in or out of the
	// broadcast group of a session.
	JoinRoom(memberID, sessionID string)
	LeaveRoom(memberID, sessionID string)
	// ToSession sends an event to every member of a session. It is kept
	// for connection-state recovery: a member that drops and comes back
	// within the recovery window receives it then.
	ToSession(sessionID, event string, payload any)
	// ToSessionVolatile sends an event that is worthless once stale
	// (scroll_tick): members whose writer is behind do not get it, and it
	// is never replayed on recovery.
	ToSessionVolatile(sessionID, event string, payload any)
	// ToMember sends an event to one member's socket.
	ToMember(memberID, event string, payload any)
	// Disconnect closes a member's socket with a Socket.IO DISCONNECT.
	Disconnect(memberID string)
}
