package metrics

// Label values are a closed set so that a client sending made-up codes or a
// caller passing free text cannot grow the Prometheus series or the JSON
// without bound; anything unknown is counted under the catch-all.

// ErrorCodes are the protocol's stable error codes, in report order. Codes
// outside this list are counted as OtherCode.
var ErrorCodes = []string{
	"INVALID_PAYLOAD",
	"INVALID_SESSION_ID",
	"NOT_IN_SESSION",
	"NOT_LEADER",
	"SESSION_FULL",
	"RATE_LIMITED",
	"UNKNOWN_EVENT",
	"PAYLOAD_TOO_LARGE",
	"INTERNAL",
	OtherCode,
}

// OtherCode is where unknown error codes are counted.
const OtherCode = "OTHER"

// Reasons a connection is refused before it is established, for
// ConnRejected. Others are counted as RejectOther.
const (
	RejectOrigin    = "origin"           // Origin not allowed by CORS_ORIGIN
	RejectTransport = "transport"        // long-polling or another non-WebSocket transport
	RejectProtocol  = "protocol_version" // EIO other than 4, or a malformed handshake
	RejectCapacity  = "capacity"         // connection or session limits reached
	RejectRateLimit = "rate_limited"     // per-IP limit on new connections
	RejectDraining  = "draining"         // server shutting down
	RejectOther     = "other"
)

var rejectReasons = []string{
	RejectOrigin, RejectTransport, RejectProtocol, RejectCapacity,
	RejectRateLimit, RejectDraining, RejectOther,
}

// Alert types, the `type` of an Alert and the label of bandsync_alert_active.
const (
	AlertHighLatency      = "high_latency"
	AlertHighMemory       = "high_memory"
	AlertHighCPU          = "high_cpu"
	AlertConnectionErrors = "connection_errors"
	AlertRateLimit        = "rate_limit_violations"
	// AlertStoreUnavailable: the configured Redis cannot be reached and the
	// instance serves from memory (Options.StoreUnavailable).
	AlertStoreUnavailable = "store_unavailable"
)

var alertTypes = []string{
	AlertHighLatency, AlertHighMemory, AlertHighCPU, AlertConnectionErrors, AlertRateLimit,
	AlertStoreUnavailable,
}

// indexer maps a label value to its slot; lookups of a string key in a Go map
// do not allocate, which keeps the hot path allocation-free.
type indexer struct {
	idx   map[string]int
	other int
}

func newIndexer(values []string, other string) indexer {
	ix := indexer{idx: make(map[string]int, len(values))}
	for i, v := range values {
		ix.idx[v] = i
	}
	ix.other = ix.idx[other]
	return ix
}

func (ix indexer) of(v string) int {
	if i, ok := ix.idx[v]; ok {
		return i
	}
	return ix.other
}
