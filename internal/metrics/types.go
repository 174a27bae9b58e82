package metrics

// Gauges is the engine's current state, sampled when a snapshot or interval
// sample is taken.
type Gauges struct {
	Sessions        int `json:"active"`
	PlayingSessions int `json:"playing"`
	Members         int `json:"members"`
}

// LatencyStats summarises a distribution of durations over one interval.
type LatencyStats struct {
	AvgMs   float64 `json:"avgMs"`
	P50Ms   float64 `json:"p50Ms"`
	P95Ms   float64 `json:"p95Ms"`
	P99Ms   float64 `json:"p99Ms"`
	MaxMs   float64 `json:"maxMs"`
	Samples uint64  `json:"samples"`
}

// ClientSyncStats aggregates the sync quality devices report about
// themselves. Offsets are absolute: a device 5 ms early is as far off as one
// 5 ms late.
type ClientSyncStats struct {
	Reports   uint64       `json:"reports"`
	AbsOffset LatencyStats `json:"absOffset"`
	RTT       LatencyStats `json:"rtt"`
	Jitter    LatencyStats `json:"jitter"`
}

// Alert is a performance condition that held over the latest interval.
type Alert struct {
	Type      string  `json:"type"`
	Severity  string  `json:"severity"`
	Message   string  `json:"message"`
	Value     float64 `json:"value"`
	Threshold float64 `json:"threshold"`
	Unit      string  `json:"unit"`
	Since     int64   `json:"since"` // epoch ms of the interval that raised it
}

// Sample is one interval's worth of metrics, the unit of the history.
// Counts are per interval; Connections and the gauges are the state at its end.
type Sample struct {
	// Instance is the instance that took the sample; set by a history
	// store shared by several instances (Redis), empty otherwise.
	Instance            string          `json:"instance,omitempty"`
	Timestamp           int64           `json:"timestamp"` // epoch ms at the end of the interval
	IntervalMs          int64           `json:"intervalMs"`
	Connections         int64           `json:"connections"`
	ConnectionsOpened   uint64          `json:"connectionsOpened"`
	ConnectionErrors    uint64          `json:"connectionErrors"`
	ConnectionsRejected uint64          `json:"connectionsRejected"`
	MessagesIn          uint64          `json:"messagesIn"`
	MessagesOut         uint64          `json:"messagesOut"`
	MessagesPerSecond   float64         `json:"messagesPerSecond"`
	SyncLatency         LatencyStats    `json:"syncLatency"`
	EventProcessing     LatencyStats    `json:"eventProcessing"`
	ClientSync          ClientSyncStats `json:"clientSync"`
	HeapAllocBytes      uint64          `json:"heapAllocBytes"`
	RSSBytes            uint64          `json:"rssBytes"`
	CPUPercent          float64         `json:"cpuPercent"`
	Goroutines          int             `json:"goroutines"`
	Sessions            Gauges          `json:"sessions"`
	RateLimitViolations uint64          `json:"rateLimitViolations"`
	Errors              uint64          `json:"errors"`
	Alerts              []string        `json:"alerts"` // types of the alerts active at the end of the interval
}

// Snapshot is the JSON document served by GET /metrics. Rates and
// distributions cover the last completed interval (the running one before the
// first interval closes); totals are since start; memory, runtime and
// sessions are read when the snapshot is taken.
type Snapshot struct {
	InstanceID      string          `json:"instanceId"`
	Timestamp       int64           `json:"timestamp"` // epoch ms
	UptimeSeconds   float64         `json:"uptimeSeconds"`
	IntervalMs      int64           `json:"intervalMs"` // length of the interval the rates cover
	Connections     ConnStats       `json:"connections"`
	Messages        MessageStats    `json:"messages"`
	SyncLatency     LatencyStats    `json:"syncLatency"`
	EventProcessing LatencyStats    `json:"eventProcessing"`
	Memory          MemoryStats     `json:"memory"`
	CPU             CPUStats        `json:"cpu"`
	Sessions        Gauges          `json:"sessions"`
	RateLimit       RateLimitStats  `json:"rateLimit"`
	Errors          ErrorStats      `json:"errors"`
	ClientSync      ClientSyncStats `json:"clientSync"`
	Alerts          []Alert         `json:"alerts"`
	Runtime         RuntimeStats    `json:"runtime"`
}

// ConnStats counts WebSocket connections.
type ConnStats struct {
	Active   int64             `json:"active"`
	Total    uint64            `json:"total"`
	Errors   uint64            `json:"errors"`
	Rejected uint64            `json:"rejected"`
	ByReason map[string]uint64 `json:"rejectedByReason"`
}

// MessageStats counts Socket.IO messages; PerSecond is in plus out.
type MessageStats struct {
	In           uint64  `json:"in"`
	Out          uint64  `json:"out"`
	PerSecond    float64 `json:"perSecond"`
	InPerSecond  float64 `json:"inPerSecond"`
	OutPerSecond float64 `json:"outPerSecond"`
}

// MemoryStats is the process's memory use.
type MemoryStats struct {
	HeapAllocBytes uint64 `json:"heapAllocBytes"`
	HeapInuseBytes uint64 `json:"heapInuseBytes"`
	HeapSysBytes   uint64 `json:"heapSysBytes"`
	SysBytes       uint64 `json:"sysBytes"`
	RSSBytes       uint64 `json:"rssBytes"` // 0 where /proc is unavailable
}

// CPUStats is process CPU time over the interval as a percentage of one core
// (so it can exceed 100 on a multi-core machine).
type CPUStats struct {
	Percent float64 `json:"percent"`
	NumCPU  int     `json:"numCpu"`
}

// RateLimitStats counts per-socket rate-limit violations.
type RateLimitStats struct {
	Violations             uint64 `json:"violations"`
	ViolationsLastInterval uint64 `json:"violationsLastInterval"`
}

// ErrorStats counts protocol errors sent to clients, by stable code.
type ErrorStats struct {
	Total  uint64            `json:"total"`
	ByCode map[string]uint64 `json:"byCode"`
}

// RuntimeStats is read when the snapshot is taken, so a before/after pair
// shows whether goroutines leaked.
type RuntimeStats struct {
	Goroutines     int     `json:"goroutines"`
	NumGC          uint32  `json:"numGC"`
	GCPauseTotalMs float64 `json:"gcPauseTotalMs"`
}
