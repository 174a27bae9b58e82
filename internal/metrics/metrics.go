// Package metrics is BandSync's performance monitor: lock-free counters and
// latency histograms fed from the message path, a periodic sampler that turns
// them into per-interval rates, percentiles and alerts, the JSON snapshot and
// history behind GET /metrics and /metrics/history, and a Prometheus registry
// exposing the same figures as bandsync_* series.
package metrics

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bandsync/bandsync/internal/protocol"
)

// Options configures a Monitor. Zero values get the original server's defaults.
type Options struct {
	Interval   time.Duration // METRICS_INTERVAL (10 s): sampling and alerting period
	Retention  time.Duration // METRICS_RETENTION (24 h): how much history the in-memory ring keeps
	SyncTarget time.Duration // SYNC_TARGET_LATENCY (50 ms); the latency alert fires at twice this
	InstanceID string
	Logger     *slog.Logger
	// History stores interval samples; nil means an in-memory ring of
	// Retention/Interval entries.
	History HistoryStore
	// Gauges reports the engine's sessions and members. It is called once per
	// interval, per Snapshot and per Prometheus scrape, from other goroutines
	// than the engine's, so it must be safe for concurrent use. Nil reports zeros.
	Gauges func() Gauges
	// StoreUnavailable reports since when a configured shared store
	// (Redis) has been unreachable, zero while it is reachable; while it
	// is not, the store_unavailable alert holds. Nil: no such store.
	StoreUnavailable func() time.Time
}

// Thresholds of the alerts that are not derived from Options.
const (
	heapAlertBytes   = 500 << 20 // heap in use above 500 MiB
	cpuAlertPercent  = 80.0      // process CPU above 80% of one core over the interval
	latencyAlertMult = 2         // p99 sync latency above this multiple of SyncTarget
)

// Monitor collects BandSync's performance metrics. All methods are safe for
// concurrent use; the hot-path ones (Conn*, Message*, Observe*, RateLimited,
// ProtocolError) are a few atomic operations and never allocate.
type Monitor struct {
	interval   time.Duration
	syncTarget time.Duration
	instanceID string
	log        *slog.Logger
	history    HistoryStore
	gauges     func() Gauges
	storeDown  func() time.Time
	readProc   func() procStats // replaced in tests to inject resource readings
	start      time.Time

	connActive   atomic.Int64
	connTotal    atomic.Uint64
	connErrors   atomic.Uint64
	connRejected atomic.Uint64
	rejectCounts []atomic.Uint64 // by rejectIdx
	msgIn        atomic.Uint64
	msgOut       atomic.Uint64
	rateLimited  atomic.Uint64
	errTotal     atomic.Uint64
	errCounts    []atomic.Uint64 // by errIdx
	rejectIdx    indexer
	errIdx       indexer

	syncLat      logHist
	eventProc    logHist
	clientOffset logHist
	clientRTT    logHist
	clientJitter logHist
	clientReport atomic.Uint64

	prom *promMetrics

	mu    sync.Mutex // guards the interval state below; never taken on the hot path
	iv    intervalState
	last  Sample // the last completed interval
	ticks int
	// active holds the alerts raised and not yet cleared, by type.
	active         map[string]Alert
	historyFailing bool
}

// intervalState is where the running interval started.
type intervalState struct {
	at                                   time.Time
	cpu                                  time.Duration
	msgIn, msgOut                        uint64
	connOpened, connErrors, connRejected uint64
	rateLimited, errors, clientReports   uint64
	syncLat, eventProc                   histMark
	clientOffset, clientRTT, clientJit   histMark
}

// New returns a Monitor. It starts nothing; call Run to sample periodically.
func New(o Options) *Monitor { return newMonitor(o, readProc, time.Now()) }

// newMonitor lets tests supply the resource readings and the start instant.
func newMonitor(o Options, rp func() procStats, start time.Time) *Monitor {
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.Retention <= 0 {
		o.Retention = 24 * time.Hour
	}
	if o.SyncTarget <= 0 {
		o.SyncTarget = 50 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.History == nil {
		o.History = NewMemoryHistory(int(o.Retention / o.Interval))
	}
	if o.Gauges == nil {
		o.Gauges = func() Gauges { return Gauges{} }
	}
	m := &Monitor{
		interval:     o.Interval,
		syncTarget:   o.SyncTarget,
		instanceID:   o.InstanceID,
		log:          o.Logger.With("component", "metrics"),
		history:      o.History,
		gauges:       o.Gauges,
		storeDown:    o.StoreUnavailable,
		readProc:     rp,
		start:        start,
		rejectCounts: make([]atomic.Uint64, len(rejectReasons)),
		errCounts:    make([]atomic.Uint64, len(errorCodes)),
		rejectIdx:    newIndexer(rejectReasons, protocol.RejectOther),
		errIdx:       newIndexer(errorCodes, otherCode),
		active:       make(map[string]Alert),
	}
	m.iv.at = m.start
	m.iv.cpu = rp().cpu
	m.prom = newPromMetrics(m)
	return m
}

// ConnOpened records an established WebSocket connection.
func (m *Monitor) ConnOpened() {
	m.connActive.Add(1)
	m.connTotal.Add(1)
}

// ConnClosed records the end of a connection counted by ConnOpened; call it
// exactly once per ConnOpened, whatever the reason for closing.
func (m *Monitor) ConnClosed() { m.connActive.Add(-1) }

// ConnError records a transport-level failure (failed upgrade, read or write
// error, missed pongs). It does not close anything: a connection that ends
// because of it still gets its ConnClosed.
func (m *Monitor) ConnError() {
	m.connErrors.Add(1)
}

// ConnRejected records a connection refused before it was established (so no
// ConnOpened/ConnClosed). reason is one of protocol.RejectReasons; anything
// else counts as protocol.RejectOther.
func (m *Monitor) ConnRejected(reason string) {
	m.connRejected.Add(1)
	m.rejectCounts[m.rejectIdx.of(reason)].Add(1)
}

// MessageIn records one Socket.IO event received from a client.
func (m *Monitor) MessageIn() { m.msgIn.Add(1) }

// MessagesOut records n Socket.IO events sent; a room broadcast to k sockets
// is k messages.
func (m *Monitor) MessagesOut(n int) {
	if n > 0 {
		m.msgOut.Add(uint64(n))
	}
}

// ObserveSyncLatency records a one-way latency sample (round trip / 2) from a
// heartbeat or latency probe.
func (m *Monitor) ObserveSyncLatency(d time.Duration) {
	m.syncLat.observe(d)
	m.prom.syncLatency.Observe(d.Seconds())
}

// ObserveEventProcessing records how long handling one client event took.
func (m *Monitor) ObserveEventProcessing(d time.Duration) {
	m.eventProc.observe(d)
	m.prom.eventProc.Observe(d.Seconds())
}

// RateLimited records one per-socket rate-limit violation. It does not count
// a RATE_LIMITED protocol error; call ProtocolError too if one is sent.
func (m *Monitor) RateLimited() { m.rateLimited.Add(1) }

// ProtocolError records an error reported to a client, by its stable code
// (see errorCodes); unknown codes count as otherCode.
func (m *Monitor) ProtocolError(code string) {
	m.errTotal.Add(1)
	m.errCounts[m.errIdx.of(code)].Add(1)
}

// ObserveClientSync records one device's own report of its sync quality:
// clock offset to the server (either sign), round trip, and jitter. Only the
// aggregate is kept.
func (m *Monitor) ObserveClientSync(offset, rtt, jitter time.Duration) {
	offset = max(offset, -offset)
	m.clientReport.Add(1)
	m.clientOffset.observe(offset)
	m.clientRTT.observe(rtt)
	m.clientJitter.observe(jitter)
	m.prom.clientOffset.Observe(offset.Seconds())
	m.prom.clientRTT.Observe(rtt.Seconds())
	m.prom.clientJitter.Observe(jitter.Seconds())
}

// Gatherer returns the Monitor's own Prometheus registry (not the global
// one): bandsync_* series plus the Go runtime and process collectors.
func (m *Monitor) Gatherer() prometheus.Gatherer { return m.prom.reg }

// Registerer lets other packages add their own collectors to the same
// registry, so one scrape returns everything.
func (m *Monitor) Registerer() prometheus.Registerer { return m.prom.reg }

// History returns the stored samples taken at or after since, oldest first.
func (m *Monitor) History(ctx context.Context, since time.Time) ([]Sample, error) {
	return m.history.Range(ctx, since)
}
