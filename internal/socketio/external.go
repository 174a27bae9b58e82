package socketio

import "github.com/bandsync/bandsync/internal/wsframe"

// SharedRecovery is a RecoveryStore shared by several server instances (the
// Redis store). It differs from the memory one in two ways, and the server
// adapts to both when its Recovery implements this interface:
//
//   - Offsets are assigned outside the server. A session's events are
//     recorded by the same atomic step that commits the change (in Redis, a
//     Lua script appending to the session's stream), and the offset a
//     client sees is that record's id. The server therefore records
//     nothing itself: Emit and Broadcast go without an offset, and recorded
//     frames are built with EncodeRecorded and queued with BroadcastFrame or
//     Conn.Send. ParseOffset turns the id a client presents back into the
//     number Since and the replay deduplication compare.
//   - An instance can die without running its disconnect hooks, so the
//     socket's session must be known before it drops. Track is called when
//     a socket connects and whenever its rooms change; Forget when it is
//     closed for good. Both are called with locks held and must not block.
type SharedRecovery interface {
	RecoveryStore
	ParseOffset(offset string) (uint64, bool)
	Track(pid string, s Saved)
	Forget(pid string)
}

// EncodeRecorded builds the frame of an event recorded elsewhere: payload is
// the event's JSON argument and offset the id it was recorded under, which
// the client sends back when it recovers; seq is the same offset as
// ParseOffset reads it, for the replay's deduplication.
func EncodeRecorded(event string, payload []byte, offset string, seq uint64) *Frame {
	if len(payload) == 0 {
		payload = nil
	}
	f := eventFrame(event, payload, offset)
	f.seq = seq
	return f
}

// RecordedPacket is the Engine.IO packet of an event carrying offset, as a
// RecoveryStore's Since returns it.
func RecordedPacket(event string, payload []byte, offset string) []byte {
	if len(payload) == 0 {
		payload = nil
	}
	return wsframe.AppendEvent(make([]byte, 0, wsframe.EventLen(event, payload, offset)), event, payload, offset)
}

// Send queues an already encoded frame to this socket; it reports false
// when the socket is closed or the frame was dropped.
func (c *Conn) Send(f *Frame) bool { return c.enqueue(f) }

// SharedRecovery reports whether the Recovery is a SharedRecovery: events
// are then recorded outside the server and sent with EncodeRecorded.
func (s *Server) SharedRecovery() bool { return s.shared() != nil }

// shared returns the Recovery as a SharedRecovery, or nil.
func (s *Server) shared() SharedRecovery {
	sr, _ := s.opts.Recovery.(SharedRecovery)
	return sr
}

// parseClientOffset reads the offset a recovering client presents.
func (s *Server) parseClientOffset(offset string) (uint64, bool) {
	if sr := s.shared(); sr != nil {
		return sr.ParseOffset(offset)
	}
	return parseOffset(offset)
}

// track reports a connected socket's rooms to a shared recovery store.
func (s *Server) track(c *Conn) {
	if sr := s.shared(); sr != nil && c.pid != "" && c.connected.Load() {
		sr.Track(c.pid, Saved{SID: c.id, Rooms: c.Rooms()})
	}
}

// untrack tells a shared recovery store that a socket will not come back.
func (s *Server) untrack(c *Conn) {
	if sr := s.shared(); sr != nil && c.pid != "" {
		sr.Forget(c.pid)
	}
}
