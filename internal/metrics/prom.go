package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// latencyBuckets spans 0.1 ms (a LAN round trip) to 1 s (a device that is
// effectively out of sync), in seconds.
var latencyBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
}

type promMetrics struct {
	reg          *prometheus.Registry
	syncLatency  prometheus.Histogram
	eventProc    prometheus.Histogram
	clientOffset prometheus.Histogram
	clientRTT    prometheus.Histogram
	clientJitter prometheus.Histogram
	alertActive  *prometheus.GaugeVec
	alertsTotal  *prometheus.CounterVec
}

func newPromMetrics(m *Monitor) *promMetrics {
	hist := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: name, Help: help, Buckets: latencyBuckets,
		})
	}
	p := &promMetrics{
		reg:          prometheus.NewRegistry(),
		syncLatency:  hist("bandsync_sync_latency_seconds", "One-way latency to clients (round trip / 2) from heartbeats and latency probes."),
		eventProc:    hist("bandsync_event_processing_seconds", "Time to handle one client event."),
		clientOffset: hist("bandsync_client_clock_offset_seconds", "Absolute clock offset to the server reported by devices."),
		clientRTT:    hist("bandsync_client_rtt_seconds", "Round-trip time reported by devices."),
		clientJitter: hist("bandsync_client_jitter_seconds", "Round-trip jitter reported by devices."),
		alertActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bandsync_alert_active",
			Help: "1 while the performance alert's condition held in the latest interval.",
		}, []string{"type"}),
		alertsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bandsync_alerts_total",
			Help: "Performance alerts raised (each activation counts once).",
		}, []string{"type"}),
	}
	// Every alert type is exported from the start, so a dashboard or rule can
	// tell "never fired" from "not exported".
	for _, t := range alertTypes {
		p.alertActive.WithLabelValues(t).Set(0)
		p.alertsTotal.WithLabelValues(t)
	}
	p.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		p.syncLatency, p.eventProc, p.clientOffset, p.clientRTT, p.clientJitter,
		p.alertActive, p.alertsTotal,
		newMonitorCollector(m),
	)
	return p
}

// monitorCollector exports the Monitor's atomic counters at scrape time, so
// the hot path updates each figure once rather than once for JSON and once
// for Prometheus.
type monitorCollector struct {
	m                                           *Monitor
	connActive, connTotal, connErrors, rejected *prometheus.Desc
	msgIn, msgOut, rateLimited, protoErrors     *prometheus.Desc
	sessions, playing, members, cpu, info       *prometheus.Desc
}

func newMonitorCollector(m *Monitor) *monitorCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &monitorCollector{
		m:           m,
		connActive:  d("bandsync_connections_active", "Open WebSocket connections."),
		connTotal:   d("bandsync_connections_total", "WebSocket connections established."),
		connErrors:  d("bandsync_connection_errors_total", "Transport-level connection failures."),
		rejected:    d("bandsync_connections_rejected_total", "Connections refused before being established.", "reason"),
		msgIn:       d("bandsync_messages_received_total", "Socket.IO events received from clients."),
		msgOut:      d("bandsync_messages_sent_total", "Socket.IO events sent to clients."),
		rateLimited: d("bandsync_rate_limit_violations_total", "Per-socket rate-limit violations."),
		protoErrors: d("bandsync_protocol_errors_total", "Errors reported to clients, by stable code.", "code"),
		sessions:    d("bandsync_sessions_active", "Sessions held by this instance."),
		playing:     d("bandsync_sessions_playing", "Sessions whose transport is running."),
		members:     d("bandsync_session_members", "Members across all sessions."),
		cpu:         d("bandsync_cpu_percent", "Process CPU over the latest interval, percent of one core."),
		info:        d("bandsync_instance_info", "Constant 1, labelled with this server's instance id.", "instance_id"),
	}
}

func (c *monitorCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.connActive, c.connTotal, c.connErrors, c.rejected, c.msgIn, c.msgOut,
		c.rateLimited, c.protoErrors, c.sessions, c.playing, c.members, c.cpu, c.info,
	} {
		ch <- d
	}
}

func (c *monitorCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.connActive, float64(m.connActive.Load()))
	counter(c.connTotal, m.connTotal.Load())
	counter(c.connErrors, m.connErrors.Load())
	for i, r := range rejectReasons {
		counter(c.rejected, m.rejectCounts[i].Load(), r)
	}
	counter(c.msgIn, m.msgIn.Load())
	counter(c.msgOut, m.msgOut.Load())
	counter(c.rateLimited, m.rateLimited.Load())
	for i, code := range errorCodes {
		counter(c.protoErrors, m.errCounts[i].Load(), code)
	}
	g := m.gauges()
	gauge(c.sessions, float64(g.Sessions))
	gauge(c.playing, float64(g.PlayingSessions))
	gauge(c.members, float64(g.Members))
	m.mu.Lock()
	cpu := m.last.CPUPercent
	m.mu.Unlock()
	gauge(c.cpu, cpu)
	gauge(c.info, 1, m.instanceID)
}
