package metrics

import (
	"context"
	"fmt"
	"time"
)

// Run closes an interval every Interval until ctx is done: it samples the
// process, computes rates and percentiles, evaluates alerts, and appends the
// sample to the history.
func (m *Monitor) Run(ctx context.Context) {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			// A slow history store (Redis) must not hold up the next interval.
			tctx, cancel := context.WithTimeout(ctx, m.interval)
			m.tick(tctx, now)
			cancel()
		}
	}
}

// Tick closes the running interval at now, as Run does every Interval, and
// returns its sample. It exists so tests and callers with their own clock can
// drive the monitor synchronously.
func (m *Monitor) Tick(now time.Time) Sample {
	return m.tick(context.Background(), now)
}

func (m *Monitor) tick(ctx context.Context, now time.Time) Sample {
	proc := m.readProc()
	g := m.gauges()

	m.mu.Lock()
	s := m.measure(now, proc, g, true)
	raised, cleared := m.updateAlerts(s, now)
	s.Alerts = make([]string, 0, len(m.active))
	for _, t := range alertTypes {
		if _, ok := m.active[t]; ok {
			s.Alerts = append(s.Alerts, t)
		}
	}
	m.last = s
	m.ticks++
	m.mu.Unlock()

	for _, a := range raised {
		m.log.Warn("performance alert raised",
			"type", a.Type, "severity", a.Severity, "message", a.Message,
			"value", a.Value, "threshold", a.Threshold, "unit", a.Unit)
	}
	for _, a := range cleared {
		m.log.Info("performance alert cleared",
			"type", a.Type, "activeFor", now.Sub(time.UnixMilli(a.Since)))
	}

	err := m.history.Append(ctx, s)
	m.mu.Lock()
	// Log a failing store once when it starts failing and once when it
	// recovers, not every interval.
	wasFailing := m.historyFailing
	m.historyFailing = err != nil
	m.mu.Unlock()
	switch {
	case err != nil && !wasFailing:
		m.log.Warn("metrics history append failed; samples are lost until it recovers", "err", err)
	case err == nil && wasFailing:
		m.log.Info("metrics history append recovered")
	}
	return s
}

// measure computes the sample of the interval running since m.iv. With
// advance it also closes that interval. m.mu must be held.
func (m *Monitor) measure(now time.Time, proc procStats, g Gauges, advance bool) Sample {
	iv := &m.iv
	elapsed := now.Sub(iv.at)
	if elapsed <= 0 {
		elapsed = m.interval
	}
	secs := elapsed.Seconds()

	in, out := m.msgIn.Load(), m.msgOut.Load()
	opened, connErrs, rejected := m.connTotal.Load(), m.connErrors.Load(), m.connRejected.Load()
	limited, errs, reports := m.rateLimited.Load(), m.errTotal.Load(), m.clientReport.Load()

	s := Sample{
		Timestamp:           now.UnixMilli(),
		IntervalMs:          elapsed.Milliseconds(),
		Connections:         m.connActive.Load(),
		ConnectionsOpened:   opened - iv.connOpened,
		ConnectionErrors:    connErrs - iv.connErrors,
		ConnectionsRejected: rejected - iv.connRejected,
		MessagesIn:          in - iv.msgIn,
		MessagesOut:         out - iv.msgOut,
		MessagesPerSecond:   float64(in-iv.msgIn+out-iv.msgOut) / secs,
		SyncLatency:         m.syncLat.stats(&iv.syncLat, advance),
		EventProcessing:     m.eventProc.stats(&iv.eventProc, advance),
		ClientSync: ClientSyncStats{
			Reports:   reports - iv.clientReports,
			AbsOffset: m.clientOffset.stats(&iv.clientOffset, advance),
			RTT:       m.clientRTT.stats(&iv.clientRTT, advance),
			Jitter:    m.clientJitter.stats(&iv.clientJit, advance),
		},
		HeapAllocBytes:      proc.heapAlloc,
		RSSBytes:            proc.rss,
		CPUPercent:          100 * (proc.cpu - iv.cpu).Seconds() / secs,
		Goroutines:          proc.goroutines,
		Sessions:            g,
		RateLimitViolations: limited - iv.rateLimited,
		Errors:              errs - iv.errors,
	}
	if advance {
		iv.at, iv.cpu = now, proc.cpu
		iv.msgIn, iv.msgOut = in, out
		iv.connOpened, iv.connErrors, iv.connRejected = opened, connErrs, rejected
		iv.rateLimited, iv.errors, iv.clientReports = limited, errs, reports
	}
	return s
}

// updateAlerts makes the active set the alerts whose conditions hold in s and
// returns the ones that appeared and disappeared. m.mu must be held.
func (m *Monitor) updateAlerts(s Sample, now time.Time) (raised, cleared []Alert) {
	holding := make(map[string]Alert, len(alertTypes))
	add := func(a Alert) { holding[a.Type] = a }

	latencyLimit := float64(latencyAlertMult*m.syncTarget) / float64(time.Millisecond)
	if s.SyncLatency.Samples > 0 && s.SyncLatency.P99Ms > latencyLimit {
		add(Alert{
			Type: AlertHighLatency, Severity: "warning", Unit: "ms",
			Value: s.SyncLatency.P99Ms, Threshold: latencyLimit,
			Message: fmt.Sprintf("sync latency p99 %.1f ms is above %.0f ms (%dx the %v target)",
				s.SyncLatency.P99Ms, latencyLimit, latencyAlertMult, m.syncTarget),
		})
	}
	if s.HeapAllocBytes > heapAlertBytes {
		add(Alert{
			Type: AlertHighMemory, Severity: "critical", Unit: "bytes",
			Value: float64(s.HeapAllocBytes), Threshold: heapAlertBytes,
			Message: fmt.Sprintf("heap %d MiB is above %d MiB", s.HeapAllocBytes>>20, heapAlertBytes>>20),
		})
	}
	if s.CPUPercent > cpuAlertPercent {
		add(Alert{
			Type: AlertHighCPU, Severity: "warning", Unit: "percent",
			Value: s.CPUPercent, Threshold: cpuAlertPercent,
			Message: fmt.Sprintf("process CPU %.0f%% of one core is above %.0f%%", s.CPUPercent, cpuAlertPercent),
		})
	}
	if s.ConnectionErrors > 0 {
		add(Alert{
			Type: AlertConnectionErrors, Severity: "warning", Unit: "count",
			Value: float64(s.ConnectionErrors), Threshold: 0,
			Message: fmt.Sprintf("%d connection errors in the last interval", s.ConnectionErrors),
		})
	}
	if s.RateLimitViolations > 0 {
		add(Alert{
			Type: AlertRateLimit, Severity: "warning", Unit: "count",
			Value: float64(s.RateLimitViolations), Threshold: 0,
			Message: fmt.Sprintf("%d rate-limit violations in the last interval", s.RateLimitViolations),
		})
	}

	if m.storeDown != nil {
		if since := m.storeDown(); !since.IsZero() {
			down := now.Sub(since).Seconds()
			add(Alert{
				Type: AlertStoreUnavailable, Severity: "critical", Unit: "seconds",
				Value: down, Threshold: 0,
				Message: fmt.Sprintf("Redis unreachable for %.0f s: serving from memory, instances are not in sync until it returns", down),
			})
		}
	}

	for _, t := range alertTypes {
		prev, wasActive := m.active[t]
		cur, holds := holding[t]
		switch {
		case holds && !wasActive:
			cur.Since = now.UnixMilli()
			m.active[t] = cur
			raised = append(raised, cur)
			m.prom.alertActive.WithLabelValues(t).Set(1)
			m.prom.alertsTotal.WithLabelValues(t).Inc()
		case holds:
			// Still active: the figures move, the start time stays.
			cur.Since = prev.Since
			m.active[t] = cur
		case wasActive:
			delete(m.active, t)
			cleared = append(cleared, prev)
			m.prom.alertActive.WithLabelValues(t).Set(0)
		}
	}
	return raised, cleared
}

// activeAlerts lists the active alerts in a stable order. m.mu must be held.
func (m *Monitor) activeAlerts() []Alert {
	out := make([]Alert, 0, len(m.active))
	for _, t := range alertTypes {
		if a, ok := m.active[t]; ok {
			out = append(out, a)
		}
	}
	return out
}
