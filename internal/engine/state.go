package engine

import (
	"slices"
	"strconv"
	"time"

	"github.com/bandsync/bandsync/internal/store"
)

// Reasons carried by role_changed.
const (
	ReasonClaimed            = "claimed"             // set_role leader while vacant
	ReasonTakeover           = "takeover"            // open leadership: someone else led
	ReasonSteppedDown        = "stepped_down"        // the leader chose follower
	ReasonLeaderLeft         = "leader_left"         // the leader left the session
	ReasonLeaderDisconnected = "leader_disconnected" // the leader's grace period ran out
)

// State is a session snapshot as sent in `snapshot` (docs/protocol.md).
// Position holds at ServerTimestamp, the instant the snapshot was made.
type State struct {
	SessionID       string   `json:"sessionId"`
	Message         string   `json:"message"`
	Tempo           float64  `json:"tempo"`
	TempoBpm        float64  `json:"tempoBpm"`
	IsPlaying       bool     `json:"isPlaying"`
	Position        float64  `json:"position"`
	PositionMs      float64  `json:"positionMs"`
	LeaderSocketID  *string  `json:"leaderSocketId"`
	Members         []Member `json:"members"`
	Settings        Settings `json:"settings"`
	MemberCount     int      `json:"memberCount"`
	CreatedAt       int64    `json:"createdAt"`
	LastActiveAt    int64    `json:"lastActiveAt"`
	ServerTimestamp float64  `json:"serverTimestamp"`
	Version         uint64   `json:"version"`
	// StartsAt is the epoch ms at which the current run starts (or
	// started); nil while not playing.
	StartsAt   *float64 `json:"startsAt"`
	Beat       float64  `json:"beat"`
	LeaderTerm uint64   `json:"leaderTerm"`
	SongState
}

// Member is one session member on the wire.
type Member struct {
	SocketID    string `json:"socketId"`
	DisplayName string `json:"displayName"`
	Role        string `json:"role"`
	JoinedAt    int64  `json:"joinedAt"`
	Connected   bool   `json:"connected"`
}

// Settings are per-session limits.
type Settings struct {
	MaxMembers int `json:"maxMembers"`
}

// Tick is the scroll_tick payload.
type Tick struct {
	SessionID       string  `json:"sessionId"`
	PositionMs      float64 `json:"positionMs"`
	TempoBpm        float64 `json:"tempoBpm"`
	ServerTimestamp float64 `json:"serverTimestamp"`
	Version         uint64  `json:"version"`
	Beat            float64 `json:"beat"`
}

// MarshalJSON writes the tick as AppendJSON does.
func (t Tick) MarshalJSON() ([]byte, error) {
	return t.AppendJSON(make([]byte, 0, 160+len(t.SessionID))), nil
}

// AppendJSON appends the tick's JSON to b without reflection: it is
// encoded once per playing session every tick, and the transport takes it
// straight from here (socketio.JSONAppender). Session ids are validated
// to [A-Za-z0-9_-], so they need no escaping, and every number is finite
// (tempos are validated, positions clamped).
func (t Tick) AppendJSON(b []byte) []byte {
	b = append(b, `{"sessionId":"`...)
	b = append(b, t.SessionID...)
	b = append(b, `","positionMs":`...)
	b = strconv.AppendFloat(b, t.PositionMs, 'f', -1, 64)
	b = append(b, `,"tempoBpm":`...)
	b = strconv.AppendFloat(b, t.TempoBpm, 'f', -1, 64)
	b = append(b, `,"serverTimestamp":`...)
	b = strconv.AppendFloat(b, t.ServerTimestamp, 'f', -1, 64)
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, t.Version, 10)
	b = append(b, `,"beat":`...)
	b = strconv.AppendFloat(b, t.Beat, 'f', -1, 64)
	return append(b, '}')
}

// PlayEvent is the play payload.
type PlayEvent struct {
	SessionID       string  `json:"sessionId"`
	TempoBpm        float64 `json:"tempoBpm"`
	Position        float64 `json:"position"`
	PositionMs      float64 `json:"positionMs"`
	ServerTimestamp float64 `json:"serverTimestamp"`
	StartsAt        float64 `json:"startsAt"`
}

// TransportEvent is the pause and seek payload.
type TransportEvent struct {
	SessionID       string  `json:"sessionId"`
	Position        float64 `json:"position"`
	PositionMs      float64 `json:"positionMs"`
	ServerTimestamp float64 `json:"serverTimestamp"`
}

// StopEvent is the stop payload.
type StopEvent struct {
	SessionID       string  `json:"sessionId"`
	ServerTimestamp float64 `json:"serverTimestamp"`
}

// RoomStats is the room_stats payload.
type RoomStats struct {
	SessionID   string  `json:"sessionId"`
	MemberCount int     `json:"memberCount"`
	IsPlaying   bool    `json:"isPlaying"`
	Tempo       float64 `json:"tempo"`
	Position    float64 `json:"position"`
	Leader      *string `json:"leader"`
}

// UserJoined is the user_joined payload.
type UserJoined struct {
	Member      Member `json:"member"`
	MemberCount int    `json:"memberCount"`
}

// UserLeft is the user_left payload. NewLeader is who leads after the
// departure (nil when leadership is vacant).
type UserLeft struct {
	SocketID    string  `json:"socketId"`
	MemberCount int     `json:"memberCount"`
	NewLeader   *string `json:"newLeader"`
}

// RoleChanged is the role_changed payload: member SocketID now has Role.
type RoleChanged struct {
	SocketID       string  `json:"socketId"`
	Role           string  `json:"role"`
	PreviousLeader *string `json:"previousLeader"`
	Reason         string  `json:"reason"`
	Timestamp      float64 `json:"timestamp"`
}

// SyncResponse answers sync_request.
type SyncResponse struct {
	SessionID  string  `json:"sessionId"`
	PositionMs float64 `json:"positionMs"`
	TempoBpm   float64 `json:"tempoBpm"`
	IsPlaying  bool    `json:"isPlaying"`
	ServerTime float64 `json:"serverTime"`
}

// Stats counts what the engine holds, for /health and metrics.
type Stats struct {
	Sessions        int `json:"sessions"`
	PlayingSessions int `json:"playingSessions"`
	Members         int `json:"members"`
}

type member struct {
	id, name, role string
	joinedAt       int64 // epoch ms
	connected      bool
	inst           string // store instance holding the socket
	token          string // private resume token (resume.go); never sent in a snapshot
}

// sessionState is a session as a plain value, so that state transitions are
// functions of (state, command, now) that the pipeline can run again inside
// its compare-and-set loop.
//
// Position is never accumulated. It is derived from an anchor: anchorPos
// holds at anchorAt, and while playing it advances with real time from
// anchorAt on. A scheduled start is an anchor in the future.
type sessionState struct {
	id         string
	message    string
	tempo      float64
	playing    bool
	anchorPos  float64
	anchorAt   time.Time
	beatAnchor float64   // beat position at anchorPos
	startsAt   time.Time // zero unless playing
	leader     string    // "" when vacant
	leaderTerm uint64
	// leaderClaimed is true when the leader asked for the lead (role
	// "leader" at join, set_role leader); false when it was only given by
	// default (first in an empty session, or succession). A defaulted lead
	// yields to a member who asks; a claimed one is protected.
	leaderClaimed bool
	members       []member // join order
	maxMembers    int
	createdAt     int64
	lastActive    int64
	version       uint64
	lib           library // songs and setlist (songs.go)
}

func newSessionState(id string, maxMembers int, now time.Time) sessionState {
	return sessionState{
		id:         id,
		tempo:      DefaultTempo,
		anchorAt:   now,
		maxMembers: maxMembers,
		createdAt:  now.UnixMilli(),
		lastActive: now.UnixMilli(),
		lib:        newLibrary(),
	}
}

// clone returns a copy a transition may modify freely.
func (s sessionState) clone() sessionState {
	s.members = slices.Clone(s.members)
	s.lib = s.lib.clone()
	return s
}

// touch records a change: every change bumps the version by exactly one.
func (s *sessionState) touch(now time.Time) {
	s.version++
	s.lastActive = now.UnixMilli()
}

func (s *sessionState) positionAt(t time.Time) float64 {
	if !s.playing {
		return s.anchorPos
	}
	elapsed := t.Sub(s.anchorAt)
	if elapsed <= 0 { // before a scheduled start the position holds
		return s.anchorPos
	}
	return min(s.anchorPos+float64(elapsed)/float64(time.Millisecond), MaxPositionMs)
}

// beatFor maps a position to a beat on the current grid, which passes
// through beatAnchor at anchorPos.
func (s *sessionState) beatFor(pos float64) float64 {
	return s.beatAnchor + (pos-s.anchorPos)*s.tempo/60000
}

// reanchor moves the anchor to (pos, beat) at now. A scheduled start that
// has not happened yet stays scheduled.
func (s *sessionState) reanchor(now time.Time, pos, beat float64) {
	s.anchorPos, s.beatAnchor = pos, beat
	if !s.playing || !s.anchorAt.After(now) {
		s.anchorAt = now
	}
}

func (s *sessionState) find(id string) int {
	if id == "" {
		return -1
	}
	for i := range s.members {
		if s.members[i].id == id {
			return i
		}
	}
	return -1
}

func (s *sessionState) connectedCount() int {
	n := 0
	for i := range s.members {
		if s.members[i].connected {
			n++
		}
	}
	return n
}

// mostSenior returns the connected member with the earliest joinedAt (ties:
// earlier join order) other than exclude, or "" if there is none.
func (s *sessionState) mostSenior(exclude string) string {
	best := -1
	for i, m := range s.members {
		if !m.connected || m.id == exclude {
			continue
		}
		if best < 0 || m.joinedAt < s.members[best].joinedAt {
			best = i
		}
	}
	if best < 0 {
		return ""
	}
	return s.members[best].id
}

// setLeader hands leadership to id ("" = vacant); every change increments
// the leader term. The new lead counts as defaulted until claimLead.
func (s *sessionState) setLeader(id string) {
	if s.leader == id {
		return
	}
	s.leaderClaimed = false
	if i := s.find(s.leader); i >= 0 {
		s.members[i].role = RoleFollower
	}
	if i := s.find(id); i >= 0 {
		s.members[i].role = RoleLeader
	}
	s.leader = id
	s.leaderTerm++
}

// claimLead makes id the leader by its own request.
func (s *sessionState) claimLead(id string) {
	s.setLeader(id)
	s.leaderClaimed = true
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (m member) wire() Member {
	return Member{SocketID: m.id, DisplayName: m.name, Role: m.role, JoinedAt: m.joinedAt, Connected: m.connected}
}

func (s *sessionState) snapshot(now time.Time) State {
	pos := s.positionAt(now)
	members := make([]Member, len(s.members))
	for i, m := range s.members {
		members[i] = m.wire()
	}
	st := State{
		SessionID:       s.id,
		Message:         s.message,
		Tempo:           s.tempo,
		TempoBpm:        s.tempo,
		IsPlaying:       s.playing,
		Position:        pos,
		PositionMs:      pos,
		LeaderSocketID:  optString(s.leader),
		Members:         members,
		Settings:        Settings{MaxMembers: s.maxMembers},
		MemberCount:     s.connectedCount(),
		CreatedAt:       s.createdAt,
		LastActiveAt:    s.lastActive,
		ServerTimestamp: epochMs(now),
		Version:         s.version,
		Beat:            s.beatFor(pos),
		LeaderTerm:      s.leaderTerm,
		SongState:       s.lib.wire(),
	}
	if s.playing {
		at := epochMs(s.startsAt)
		st.StartsAt = &at
	}
	return st
}

func (s *sessionState) roomStats(now time.Time) RoomStats {
	return RoomStats{
		SessionID:   s.id,
		MemberCount: s.connectedCount(),
		IsPlaying:   s.playing,
		Tempo:       s.tempo,
		Position:    s.positionAt(now),
		Leader:      optString(s.leader),
	}
}

func (s *sessionState) transport(now time.Time) TransportEvent {
	pos := s.positionAt(now)
	return TransportEvent{SessionID: s.id, Position: pos, PositionMs: pos, ServerTimestamp: epochMs(now)}
}

func (s *sessionState) record() store.SessionRecord {
	members := make([]store.Member, len(s.members))
	for i, m := range s.members {
		members[i] = store.Member{SocketID: m.id, DisplayName: m.name, Role: m.role, JoinedAt: m.joinedAt, Connected: m.connected, Instance: m.inst, Token: m.token}
	}
	r := store.SessionRecord{
		SessionID:        s.id,
		Message:          s.message,
		Tempo:            s.tempo,
		IsPlaying:        s.playing,
		AnchorPositionMs: s.anchorPos,
		AnchorEpochMs:    epochMs(s.anchorAt),
		BeatAnchor:       s.beatAnchor,
		LeaderID:         s.leader,
		LeaderTerm:       s.leaderTerm,
		LeaderClaimed:    s.leaderClaimed,
		Members:          members,
		Settings:         store.Settings{MaxMembers: s.maxMembers},
		CreatedAt:        s.createdAt,
		LastActiveAt:     s.lastActive,
		Version:          s.version,
		Library:          s.lib.record(),
	}
	if s.playing {
		r.StartsAt = epochMs(s.startsAt)
	}
	return r
}

// stateFromRecord rebuilds a session from its record. Instants are rebuilt
// relative to now so they keep now's monotonic reading.
func stateFromRecord(r store.SessionRecord, now time.Time) sessionState {
	at := func(ms float64) time.Time { return now.Add(msDuration(ms - epochMs(now))) }
	s := sessionState{
		id:            r.SessionID,
		message:       r.Message,
		tempo:         r.Tempo,
		playing:       r.IsPlaying,
		anchorPos:     r.AnchorPositionMs,
		anchorAt:      at(r.AnchorEpochMs),
		beatAnchor:    r.BeatAnchor,
		leader:        r.LeaderID,
		leaderTerm:    r.LeaderTerm,
		leaderClaimed: r.LeaderClaimed,
		maxMembers:    r.Settings.MaxMembers,
		createdAt:     r.CreatedAt,
		lastActive:    r.LastActiveAt,
		version:       r.Version,
		lib:           libraryFromRecord(r.Library),
	}
	if r.IsPlaying {
		s.startsAt = at(r.StartsAt)
	}
	if !finiteIn(s.tempo, MinTempo, MaxTempo) {
		s.tempo = DefaultTempo
	}
	for _, m := range r.Members {
		s.members = append(s.members, member{id: m.SocketID, name: m.DisplayName, role: m.Role, joinedAt: m.JoinedAt, connected: m.Connected, inst: m.Instance, token: m.Token})
	}
	return s
}
