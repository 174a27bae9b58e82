package metrics

import (
	"runtime"
	"time"
)

// Snapshot returns the current metrics for GET /metrics.
func (m *Monitor) Snapshot() Snapshot {
	now := time.Now()
	proc := m.readProc()
	g := m.gauges()

	m.mu.Lock()
	s := m.last
	if m.ticks == 0 {
		// Nothing has closed yet: report the running interval rather than
		// zeros, so a freshly started server's /metrics is already useful.
		s = m.measure(now, proc, g, false)
	}
	alerts := m.activeAlerts()
	m.mu.Unlock()

	secs := float64(s.IntervalMs) / 1e3
	perSec := func(n uint64) float64 {
		if secs <= 0 {
			return 0
		}
		return float64(n) / secs
	}

	byReason := make(map[string]uint64, len(rejectReasons))
	for i, r := range rejectReasons {
		byReason[r] = m.rejectCounts[i].Load()
	}
	byCode := make(map[string]uint64, len(errorCodes))
	for i, c := range errorCodes {
		byCode[c] = m.errCounts[i].Load()
	}

	return Snapshot{
		InstanceID:    m.instanceID,
		Timestamp:     now.UnixMilli(),
		UptimeSeconds: now.Sub(m.start).Seconds(),
		IntervalMs:    s.IntervalMs,
		Connections: ConnStats{
			Active:   m.connActive.Load(),
			Total:    m.connTotal.Load(),
			Errors:   m.connErrors.Load(),
			Rejected: m.connRejected.Load(),
			ByReason: byReason,
		},
		Messages: MessageStats{
			In:           m.msgIn.Load(),
			Out:          m.msgOut.Load(),
			PerSecond:    perSec(s.MessagesIn + s.MessagesOut),
			InPerSecond:  perSec(s.MessagesIn),
			OutPerSecond: perSec(s.MessagesOut),
		},
		SyncLatency:     s.SyncLatency,
		EventProcessing: s.EventProcessing,
		Memory: MemoryStats{
			HeapAllocBytes: proc.heapAlloc,
			HeapInuseBytes: proc.heapInuse,
			HeapSysBytes:   proc.heapSys,
			SysBytes:       proc.sys,
			RSSBytes:       proc.rss,
		},
		CPU:      CPUStats{Percent: s.CPUPercent, NumCPU: runtime.NumCPU()},
		Sessions: g,
		RateLimit: RateLimitStats{
			Violations:             m.rateLimited.Load(),
			ViolationsLastInterval: s.RateLimitViolations,
		},
		Errors:     ErrorStats{Total: m.errTotal.Load(), ByCode: byCode},
		ClientSync: s.ClientSync,
		Alerts:     alerts,
		Runtime: RuntimeStats{
			Goroutines:     proc.goroutines,
			NumGC:          proc.numGC,
			GCPauseTotalMs: float64(proc.pauseTotal) / float64(time.Millisecond),
		},
	}
}
