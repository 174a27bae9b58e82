package store

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
)

// Shared is the extension of Store for a store that several server
// instances use at once (Redis, internal/redisstore). The engine
// type-asserts it: with a plain Store each session is authoritative in the
// memory of the one process that serves it; with a Shared store the store
// is authoritative and an instance's sessions are caches of it, changed
// only by compare-and-set commits whose events reach every instance through
// the store, in version order.
//
// Every change is one Commit: the new record, and the ordered operations
// the change produces (events for the room or for one member, room joins
// and leaves), appended to the session's log and published to the
// instances that follow the session in the same atomic step, so log order
// = publish order = version order. An entry's log id is the Socket.IO
// recovery offset of the event it carries.
type Shared interface {
	Store
	// Instance is this instance's id, stamped on members whose socket is
	// here.
	Instance() string
	// Available reports whether the store can be reached now. While it
	// cannot, the engine serves from memory and writes back when it
	// returns (Listener.Resync).
	Available() bool
	// Follow makes the Listener receive the session's published batches
	// from now on and returns the stored record (found is false when
	// there is none) with the cursor: the log id of the last entry at a
	// moment when delivery was already in effect, so every batch after
	// the cursor is delivered.
	Follow(ctx context.Context, sessionID string) (rec SessionRecord, found bool, cursor string, err error)
	// Unfollow stops the deliveries of a session.
	Unfollow(sessionID string)
	// Commit stores r if the stored record is at version prev with leader
	// term term (prev 0: there is no record), and records and publishes
	// ops with it. Otherwise it returns an error wrapping ErrConflict and
	// the stored record in Result.Current. A command evaluated against a
	// stale copy (an old version or a deposed leader's term) therefore
	// never lands; the engine reloads and evaluates it again.
	//
	// One exception: a stored record older than prev (and under a term no
	// higher than term) has lost changes the caller's copy holds, which
	// were acknowledged (Redis's asynchronous replication and a failover
	// lose them), so r is stored over it rather than refused, as
	// WriteBack would. A store that never loses a committed record never
	// meets this case. r and ops belong to the store once passed: the
	// caller must not change them again (the in-process store keeps r
	// and hands it to followers as it is).
	Commit(ctx context.Context, r SessionRecord, prev, term uint64, ops []Op) (Result, error)
	// WriteBack stores r if it is newer than the stored record (a higher
	// version and a leader term no lower, or no record at all) with ops
	// recorded and published as by Commit; otherwise it changes nothing
	// and returns the stored record. An instance that served a session
	// from memory while the store was away uses it when the store
	// returns: the higher version wins. r and ops belong to the store,
	// as with Commit.
	WriteBack(ctx context.Context, r SessionRecord, ops []Op) (Result, error)
	// Since returns the batches logged after cursor, oldest first, without
	// records. complete is false when entries after cursor may have been
	// trimmed from the log.
	Since(ctx context.Context, sessionID, cursor string) (batches []Batch, complete bool, err error)
	// Listen sets the receiver of the published batches. Call it once,
	// before Follow.
	Listen(l Listener)
}

// Presence is implemented by a Shared store in which the instances take
// one another for dead when they stop renewing their presence (Redis).
type Presence interface {
	// PresenceLapsed reports whether this instance has gone long enough
	// without renewing its presence that the others may take it for dead
	// soon: they then detach its members and, LEADER_GRACE_MS later, hand
	// the lead of its leaders to members of their own.
	PresenceLapsed() bool
}

// Listener receives what a Shared store publishes.
type Listener interface {
	// Deliver hands over one published batch of a followed session. The
	// batches of one session arrive in publish order. It must not block.
	Deliver(sessionID string, b Batch)
	// Resync reports that batches may have been missed (the subscription
	// was re-established) or that the store is available again after an
	// outage. It must not block.
	Resync()
}

// OpKind is what an Op does.
type OpKind string

// The operations of a batch.
const (
	OpBroadcast OpKind = "b" // Event to every member of the session
	OpToMember  OpKind = "t" // Event to Member only
	OpJoin      OpKind = "j" // Member's socket joins the session's room
	OpLeave     OpKind = "l" // Member's socket leaves the session's room
)

// Op is one effect of a change, in the order it must be performed on every
// instance.
type Op struct {
	Kind    OpKind          `json:"k"`
	Member  string          `json:"m,omitempty"`
	Event   string          `json:"e,omitempty"`
	Payload json.RawMessage `json:"p,omitempty"`
	// Value is the payload as the engine made it. A store that carries
	// ops out of the process encodes it into Payload (ops read back from
	// it have only Payload); the in-process store hands it over as it
	// is, so memory mode never encodes an event twice.
	Value any `json:"-"`
	// ID is the op's log id, set by the store: the recovery offset of the
	// event it carries.
	ID string `json:"-"`
}

// Batch is the operations of one change, as published or read back from
// the log.
type Batch struct {
	Version uint64
	// Prev is the log id before the batch, Last the id of its last entry;
	// a follower that has delivered up to Prev can deliver the batch
	// without a gap.
	Prev, Last string
	Ops        []Op
	// Record is the state after the change; nil when read from the log.
	Record *SessionRecord
}

// Result is what Commit and WriteBack did.
type Result struct {
	// Written reports whether the record was stored; Batch is then the
	// published batch, with its log ids.
	Written bool
	Batch   Batch
	// Current is the stored record when Written is false (Found false:
	// there is none).
	Current SessionRecord
	Found   bool
}

// CompareLogIDs orders two log ids of the form "ms-seq" (Redis stream
// ids). An empty id sorts first, as "0-0" does.
func CompareLogIDs(a, b string) int {
	am, as := splitLogID(a)
	bm, bs := splitLogID(b)
	switch {
	case am < bm:
		return -1
	case am > bm:
		return 1
	case as < bs:
		return -1
	case as > bs:
		return 1
	}
	return 0
}

func splitLogID(id string) (ms, seq uint64) {
	a, b, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(a, 10, 64)
	seq, _ = strconv.ParseUint(b, 10, 64)
	return ms, seq
}

// LogSeq packs a log id into one number that orders like the ids (20 bits
// of sequence, which is per millisecond), for comparisons that need an
// integer; ok is false when id is not of the form "ms-seq".
func LogSeq(id string) (uint64, bool) {
	a, b, found := strings.Cut(id, "-")
	if !found {
		return 0, false
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil || ms >= 1<<44 || seq >= 1<<20 {
		return 0, false
	}
	return ms<<20 | seq, true
}

// LogID is the inverse of LogSeq. It is formatted in one allocation: the
// in-process store names every operation it logs, one commit at a time.
func LogID(seq uint64) string {
	var b [41]byte // two uint64s in decimal and the dash
	out := strconv.AppendUint(b[:0], seq>>20, 10)
	out = append(out, '-')
	return string(strconv.AppendUint(out, seq&(1<<20-1), 10))
}
