// Package protocol is BandSync's wire vocabulary, each word defined once:
// the event names, the error codes, the reasons a handshake is refused and
// the session-id rule of docs/protocol.md. The server's packages spell
// them through these constants; the JavaScript SDK and the end-to-end
// tests read the same lists from files generated from this package
// (protocol.json here, a marked block in sdk/js), which its test keeps
// current: `go test ./internal/protocol -update` rewrites them.
package protocol

// Events a client sends. Some names go both ways (play, heartbeat,
// clock_sync...): a name is one constant whichever way it travels.
const (
	EventJoinSession        = "join_session"
	EventLeaveSession       = "leave_session"
	EventSetRole            = "set_role"
	EventSetTempo           = "set_tempo"
	EventPlay               = "play"
	EventPause              = "pause"
	EventSeek               = "seek"
	EventStop               = "stop"
	EventSyncRequest        = "sync_request"
	EventUpdateMessage      = "update_message"
	EventHeartbeat          = "heartbeat"
	EventLatencyProbe       = "latency_probe"
	EventHeartbeatResponse  = "heartbeat_response"
	EventClockSync          = "clock_sync"
	EventSyncQuality        = "sync_quality"
	EventAddSong            = "add_song"
	EventUpdateSong         = "update_song"
	EventRemoveSong         = "remove_song"
	EventMoveSong           = "move_song"
	EventSelectSong         = "select_song"
	EventGetSong            = "get_song"
	EventSetTimeSignature   = "set_time_signature"
	EventSetCountIn         = "set_count_in"
	EventTransferLeadership = "transfer_leadership"
)

// Events only the server sends.
const (
	EventSnapshot          = "snapshot"
	EventScrollTick        = "scroll_tick"
	EventRoomStats         = "room_stats"
	EventUserJoined        = "user_joined"
	EventUserLeft          = "user_left"
	EventRoleChanged       = "role_changed"
	EventLatencyResponse   = "latency_response"
	EventSyncResponse      = "sync_response"
	EventError             = "error"
	EventRateLimitExceeded = "rate_limit_exceeded"
	EventSongChanged       = "song_changed"
	EventSong              = "song"
	EventSessionJoined     = "session_joined"
)

// ClientEvents are the events the server handles, in the order of
// docs/protocol.md. Every one has exactly one handler (a test of
// internal/events holds the handlers to this list).
var ClientEvents = []string{
	EventJoinSession, EventLeaveSession, EventSetRole, EventSetTempo,
	EventPlay, EventPause, EventStop, EventSeek, EventUpdateMessage,
	EventSyncRequest, EventHeartbeat, EventLatencyProbe,
	EventHeartbeatResponse, EventClockSync, EventSyncQuality,
	EventAddSong, EventUpdateSong, EventRemoveSong, EventMoveSong,
	EventSelectSong, EventGetSong, EventSetTimeSignature, EventSetCountIn,
	EventTransferLeadership,
}

// ServerEvents are the events the server sends, in the order of
// docs/protocol.md.
var ServerEvents = []string{
	EventSnapshot, EventScrollTick, EventPlay, EventPause, EventSeek,
	EventStop, EventRoomStats, EventUserJoined, EventUserLeft,
	EventRoleChanged, EventHeartbeat, EventHeartbeatResponse,
	EventLatencyResponse, EventSyncResponse, EventError,
	EventRateLimitExceeded, EventClockSync, EventSongChanged, EventSong,
	EventSessionJoined,
}

// Error codes of a refused event: the `code` of a failed ack's error and
// of an `error` event.
const (
	CodeInvalidPayload   = "INVALID_PAYLOAD"
	CodeInvalidSessionID = "INVALID_SESSION_ID"
	CodeNotInSession     = "NOT_IN_SESSION"
	CodeNotLeader        = "NOT_LEADER"
	CodeSessionFull      = "SESSION_FULL"
	CodeRateLimited      = "RATE_LIMITED"
	CodeUnknownEvent     = "UNKNOWN_EVENT"
	CodePayloadTooLarge  = "PAYLOAD_TOO_LARGE"
	CodeInternal         = "INTERNAL"
	// CodeStoreUnavailable refuses a change to a session with members on
	// other instances while the member's instance cannot reach Redis: the
	// change could not reach them. The client may retry in a moment.
	CodeStoreUnavailable = "STORE_UNAVAILABLE"
	CodeSongNotFound     = "SONG_NOT_FOUND"
	CodeLibraryFull      = "LIBRARY_FULL"
)

// ErrorCodes are the codes an event can be refused with, in the order of
// docs/protocol.md.
var ErrorCodes = []string{
	CodeInvalidPayload, CodeInvalidSessionID, CodeNotInSession, CodeNotLeader,
	CodeSessionFull, CodeRateLimited, CodeUnknownEvent, CodePayloadTooLarge,
	CodeInternal, CodeStoreUnavailable, CodeSongNotFound, CodeLibraryFull,
}

// Error codes of the HTTP API's JSON errors, on top of INVALID_SESSION_ID,
// RATE_LIMITED and INTERNAL.
const (
	CodeNotFound         = "NOT_FOUND"
	CodeSessionNotFound  = "SESSION_NOT_FOUND"
	CodeMethodNotAllowed = "METHOD_NOT_ALLOWED"
	CodeMetricsDisabled  = "METRICS_DISABLED"
	CodeInvalidQuery     = "INVALID_QUERY"
	CodeUnauthorized     = "UNAUTHORIZED"
)

// HTTPErrorCodes are the codes of the HTTP API's error answers.
var HTTPErrorCodes = []string{
	CodeInvalidSessionID, CodeSessionNotFound, CodeNotFound,
	CodeMethodNotAllowed, CodeMetricsDisabled, CodeInvalidQuery,
	CodeUnauthorized, CodeRateLimited, CodeInternal,
}

// Reasons a WebSocket handshake is refused, the `reason` label of
// bandsync_connections_rejected_total.
const (
	RejectOrigin    = "origin"           // Origin not allowed by CORS_ORIGIN
	RejectTransport = "transport"        // long-polling or another non-WebSocket transport
	RejectProtocol  = "protocol_version" // EIO other than 4, or a malformed handshake
	RejectCapacity  = "capacity"         // the server's connection cap reached
	RejectRateLimit = "rate_limited"     // the per-address connection cap reached
	RejectDraining  = "draining"         // server shutting down
	RejectOther     = "other"
)

// RejectReasons are the handshake refusals, RejectOther last.
var RejectReasons = []string{
	RejectOrigin, RejectTransport, RejectProtocol, RejectCapacity,
	RejectRateLimit, RejectDraining, RejectOther,
}

// MaxSessionIDLen is the longest session id.
const MaxSessionIDLen = 64

// SessionIDPattern is the session-id rule as a regular expression, for
// clients and documents; ValidSessionID is the server's check.
const SessionIDPattern = `^[A-Za-z0-9_-]{1,64}$`

// ValidSessionID reports whether id is a legal session id: 1 to
// MaxSessionIDLen characters of A-Z, a-z, 0-9, '_' and '-'. Session ids
// name Redis keys and rooms and appear in URLs, hence the narrow set.
func ValidSessionID(id string) bool {
	if len(id) < 1 || len(id) > MaxSessionIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
