// Package store is the session persistence boundary of BandSync.
//
// The engine keeps every live session in memory and writes it through to a
// Store after every change. With Redis (internal/redisstore, which also
// implements Shared) another instance can serve the session from its last
// record.
//
// # Compare-and-set contract
//
// Every SessionRecord carries a Version that the engine increases by exactly
// one per change. Save is a compare-and-set on that number: it stores the
// record only when the stored version is lower than the new one and fails
// with ErrConflict otherwise (equal or higher). A writer that loses the race,
// or replays an old record, therefore can never overwrite newer state; the
// caller decides whether to reload and retry. Both implementations (the
// in-memory one here, and Redis's, a Lua script) honour exactly this rule,
// so the engine is written once against it.
package store

import (
	"context"
	"errors"
	"slices"
)

// ErrConflict is returned (wrapped) by Save when the stored record's version
// is greater than or equal to the record being saved.
var ErrConflict = errors.New("store: version conflict")

// Store persists session records. Implementations are safe for concurrent
// use.
type Store interface {
	// Save writes r if the stored version is lower than r.Version (or no
	// record exists) and returns an error wrapping ErrConflict otherwise.
	// The engine calls it after every change, so it must be cheap.
	Save(ctx context.Context, r SessionRecord) error
	// Load returns the stored record and true, or false when there is none.
	Load(ctx context.Context, sessionID string) (SessionRecord, bool, error)
	// Delete removes a record; deleting an absent record is not an error.
	Delete(ctx context.Context, sessionID string) error
	// Mode names the backend for /health: "memory" or "redis".
	Mode() string
}

// Member is the durable part of one session member.
type Member struct {
	SocketID    string `json:"socketId"`
	DisplayName string `json:"displayName"`
	Role        string `json:"role"`
	JoinedAt    int64  `json:"joinedAt"` // epoch ms
	Connected   bool   `json:"connected"`
	// Instance is the server instance the member's socket is on, when
	// several instances share the store ("" otherwise): when that
	// instance dies, its members are detached by the survivors.
	Instance string `json:"instance,omitempty"`
	// Token is the member's private resume token (docs/protocol.md).
	// It is stored so that any instance can honour it; it is never put in
	// a snapshot, an HTTP answer or a log line.
	Token string `json:"token,omitempty"`
}

// Settings are per-session limits.
type Settings struct {
	MaxMembers int `json:"maxMembers"`
}

// SessionRecord is the durable state of a session. Playback position is not
// stored as a number that goes stale: it is an anchor (AnchorPositionMs at
// AnchorEpochMs) from which the position at any instant is derived.
type SessionRecord struct {
	SessionID string  `json:"sessionId"`
	Message   string  `json:"message"`
	Tempo     float64 `json:"tempo"`
	IsPlaying bool    `json:"isPlaying"`
	// AnchorPositionMs holds at AnchorEpochMs (epoch ms with fraction);
	// while playing the position advances from there in real time. During a
	// scheduled start the anchor instant is in the future (== StartsAt).
	AnchorPositionMs float64 `json:"anchorPositionMs"`
	AnchorEpochMs    float64 `json:"anchorEpochMs"`
	// BeatAnchor is the beat position at the anchor.
	BeatAnchor float64 `json:"beatAnchor"`
	// StartsAt is the epoch ms at which the current run started or starts;
	// 0 while not playing.
	StartsAt   float64 `json:"startsAt"`
	LeaderID   string  `json:"leaderId"` // "" when vacant
	LeaderTerm uint64  `json:"leaderTerm"`
	// LeaderClaimed: the leader asked for the lead (it is protected); false
	// when it was only given by default.
	LeaderClaimed bool     `json:"leaderClaimed,omitempty"`
	Members       []Member `json:"members"` // in join order
	Settings      Settings `json:"settings"`
	// CreatedAt and LastActiveAt are epoch ms.
	CreatedAt    int64  `json:"createdAt"`
	LastActiveAt int64  `json:"lastActiveAt"`
	Version      uint64 `json:"version"`
	Library
}

// Clone returns a copy that shares no memory with r.
func (r SessionRecord) Clone() SessionRecord {
	r.Members = slices.Clone(r.Members)
	r.Library = r.Library.Clone()
	return r
}
