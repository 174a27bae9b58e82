package metrics

import (
	"slices"

	"github.com/bandsync/bandsync/internal/protocol"
)

// Label values are a closed set so that a client sending made-up codes or a
// caller passing free text cannot grow the Prometheus series or the JSON
// without bound; anything unknown is counted under the catch-all.

// errorCodes are the protocol's error codes, in report order; codes outside
// this list are counted as otherCode.
var errorCodes = append(slices.Clone(protocol.ErrorCodes), otherCode)

// otherCode is where unknown error codes are counted.
const otherCode = "OTHER"

// rejectReasons are the handshake refusals ConnRejected counts; others are
// counted as protocol.RejectOther.
var rejectReasons = protocol.RejectReasons

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
