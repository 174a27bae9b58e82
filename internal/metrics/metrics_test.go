package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bandsync/bandsync/internal/protocol"
)

var t0 = time.Date(2025, 3, 1, 20, 0, 0, 0, time.UTC)

// fakeProc is a process whose resource readings the test sets.
type fakeProc struct {
	mu sync.Mutex
	ps procStats
}

func (f *fakeProc) read() procStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ps
}

func (f *fakeProc) set(fn func(*procStats)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.ps)
}

// logRecords collects what the monitor logs, as decoded JSON lines.
type logRecords struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logRecords) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logRecords) find(level, msg string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			panic(err)
		}
		if rec["level"] == level && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

type testEnv struct {
	m    *Monitor
	proc *fakeProc
	logs *logRecords
}

// newTestMonitor starts at t0 with a 10 s interval and a 50 ms sync target
// unless o says otherwise; tick(i) closes the interval ending at t0 + i*10s.
func newTestMonitor(t *testing.T, o Options) *testEnv {
	t.Helper()
	if o.Interval == 0 {
		o.Interval = 10 * time.Second
	}
	if o.SyncTarget == 0 {
		o.SyncTarget = 50 * time.Millisecond
	}
	logs := &logRecords{}
	o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	proc := &fakeProc{ps: procStats{heapAlloc: 10 << 20, goroutines: 7}}
	return &testEnv{m: newMonitor(o, proc.read, t0), proc: proc, logs: logs}
}

func (e *testEnv) tick(i int) Sample {
	return e.m.Tick(t0.Add(time.Duration(i) * e.m.interval))
}

func within(t *testing.T, what string, got, want, relTol float64) {
	t.Helper()
	if math.Abs(got-want) > relTol*want {
		t.Errorf("%s = %v, want %v ±%.1f%%", what, got, want, relTol*100)
	}
}

func TestBucketsAreMonotonicAndAccurate(t *testing.T) {
	prev := -1
	for _, base := range []int64{1, 1_000, 1_000_000, 1_000_000_000} {
		for v := base; v < base*1000; v += 1 + v/97 {
			b := bucketOf(v)
			if b < prev {
				t.Fatalf("bucketOf(%d) = %d, below the bucket of a smaller value (%d)", v, b, prev)
			}
			prev = b
			if mid := bucketMid(b); math.Abs(mid-float64(v)) > float64(v)/128 {
				t.Fatalf("value %d reported as %v: more than 0.8%% off", v, mid)
			}
		}
	}
	if got := bucketOf(int64(time.Hour)); got != numBuckets-1 {
		t.Errorf("an hour lands in bucket %d, want the last (%d)", got, numBuckets-1)
	}
	if got := bucketOf(-5); got != 0 {
		t.Errorf("a negative duration lands in bucket %d, want 0", got)
	}
}

func TestLatencyPercentilesFromKnownSamples(t *testing.T) {
	e := newTestMonitor(t, Options{})
	for _, i := range rand.Perm(1000) {
		e.m.ObserveSyncLatency(time.Duration(i+1) * time.Millisecond)
		e.m.ObserveEventProcessing(time.Duration(i+1) * time.Microsecond)
	}
	s := e.tick(1)

	lat := s.SyncLatency
	if lat.Samples != 1000 {
		t.Fatalf("samples = %d, want 1000", lat.Samples)
	}
	within(t, "avg", lat.AvgMs, 500.5, 1e-6)
	within(t, "max", lat.MaxMs, 1000, 1e-6)
	within(t, "p50", lat.P50Ms, 500, 0.01)
	within(t, "p95", lat.P95Ms, 950, 0.01)
	within(t, "p99", lat.P99Ms, 990, 0.01)

	ev := s.EventProcessing
	within(t, "event p50", ev.P50Ms, 0.5, 0.01)
	within(t, "event p99", ev.P99Ms, 0.99, 0.01)
	within(t, "event max", ev.MaxMs, 1, 1e-6)
}

func TestP99FollowsTheTail(t *testing.T) {
	e := newTestMonitor(t, Options{})
	for range 990 {
		e.m.ObserveSyncLatency(10 * time.Millisecond)
	}
	for range 10 {
		e.m.ObserveSyncLatency(500 * time.Millisecond)
	}
	s := e.tick(1).SyncLatency
	// 1% of samples are slow: p99 (the 990th) is still a fast one, max is not.
	within(t, "p99 with 1% slow", s.P99Ms, 10, 0.01)
	within(t, "max", s.MaxMs, 500, 1e-6)

	for range 980 {
		e.m.ObserveSyncLatency(10 * time.Millisecond)
	}
	for range 20 {
		e.m.ObserveSyncLatency(500 * time.Millisecond)
	}
	within(t, "p99 with 2% slow", e.tick(2).SyncLatency.P99Ms, 500, 0.01)
}

func TestSnapshotShowsLastCompletedInterval(t *testing.T) {
	e := newTestMonitor(t, Options{})

	e.m.ObserveSyncLatency(10 * time.Millisecond)
	if got := e.m.Snapshot().SyncLatency; got.Samples != 1 || got.MaxMs != 10 {
		t.Fatalf("before the first interval closes, snapshot shows %+v, want the running interval (1 sample of 10 ms)", got)
	}

	e.tick(1)
	for range 5 {
		e.m.ObserveSyncLatency(100 * time.Millisecond)
	}
	if got := e.m.Snapshot().SyncLatency; got.Samples != 1 || got.AvgMs != 10 {
		t.Errorf("mid-interval snapshot shows %+v, want the completed interval (1 sample, avg 10 ms)", got)
	}

	e.tick(2)
	if got := e.m.Snapshot().SyncLatency; got.Samples != 5 || got.AvgMs != 100 || got.MaxMs != 100 {
		t.Errorf("after the second interval, snapshot shows %+v, want 5 samples of 100 ms", got)
	}

	e.tick(3)
	if got := e.m.Snapshot().SyncLatency; got != (LatencyStats{}) {
		t.Errorf("an interval without samples shows %+v, want zeros", got)
	}
}

func TestMessageRatesAndTotals(t *testing.T) {
	e := newTestMonitor(t, Options{})
	for range 50 {
		e.m.MessageIn()
	}
	e.m.MessagesOut(150)
	e.m.MessagesOut(-3) // ignored, not subtracted
	e.tick(1)

	e.m.MessageIn() // in the next interval: counts in totals, not in the rate
	msg := e.m.Snapshot().Messages
	if msg.In != 51 || msg.Out != 150 {
		t.Errorf("totals in=%d out=%d, want 51 and 150", msg.In, msg.Out)
	}
	within(t, "perSecond", msg.PerSecond, 20, 1e-9)
	within(t, "inPerSecond", msg.InPerSecond, 5, 1e-9)
	within(t, "outPerSecond", msg.OutPerSecond, 15, 1e-9)
}

func TestConnectionCounts(t *testing.T) {
	e := newTestMonitor(t, Options{})
	for range 3 {
		e.m.ConnOpened()
	}
	e.m.ConnClosed()
	e.m.ConnError()
	e.m.ConnRejected(protocol.RejectOrigin)
	e.m.ConnRejected("made-up reason")

	c := e.m.Snapshot().Connections
	if c.Active != 2 || c.Total != 3 || c.Errors != 1 || c.Rejected != 2 {
		t.Errorf("connections = %+v, want active 2, total 3, errors 1, rejected 2", c)
	}
	if c.ByReason[protocol.RejectOrigin] != 1 || c.ByReason[protocol.RejectOther] != 1 || len(c.ByReason) != len(rejectReasons) {
		t.Errorf("rejectedByReason = %v, want origin 1 and other 1 over the fixed reason set", c.ByReason)
	}
}

func TestErrorCodesAreBounded(t *testing.T) {
	e := newTestMonitor(t, Options{})
	e.m.ProtocolError("NOT_LEADER")
	e.m.ProtocolError("NOT_LEADER")
	for i := range 100 {
		e.m.ProtocolError("CLIENT_INVENTED_" + string(rune('A'+i%26)))
	}

	errs := e.m.Snapshot().Errors
	if errs.Total != 102 || errs.ByCode["NOT_LEADER"] != 2 || errs.ByCode[otherCode] != 100 {
		t.Errorf("errors = %+v, want total 102, NOT_LEADER 2, OTHER 100", errs)
	}
	if len(errs.ByCode) != len(errorCodes) {
		t.Errorf("byCode has %d codes, want exactly the %d known ones", len(errs.ByCode), len(errorCodes))
	}
	n, err := testutil.GatherAndCount(e.m.Gatherer(), "bandsync_protocol_errors_total")
	if err != nil || n != len(errorCodes) {
		t.Errorf("bandsync_protocol_errors_total has %d series (err %v), want %d", n, err, len(errorCodes))
	}
}

func TestClientSyncUsesAbsoluteOffsets(t *testing.T) {
	e := newTestMonitor(t, Options{})
	e.m.ObserveClientSync(-30*time.Millisecond, 40*time.Millisecond, 2*time.Millisecond)
	e.m.ObserveClientSync(10*time.Millisecond, 60*time.Millisecond, 4*time.Millisecond)
	cs := e.tick(1).ClientSync
	if cs.Reports != 2 {
		t.Errorf("reports = %d, want 2", cs.Reports)
	}
	if cs.AbsOffset.MaxMs != 30 || cs.AbsOffset.AvgMs != 20 {
		t.Errorf("abs offset = %+v, want max 30 ms avg 20 ms (a device 30 ms behind is 30 ms off)", cs.AbsOffset)
	}
	if cs.RTT.AvgMs != 50 || cs.Jitter.MaxMs != 4 {
		t.Errorf("rtt = %+v jitter = %+v, want rtt avg 50 ms, jitter max 4 ms", cs.RTT, cs.Jitter)
	}
}

func alertTypesOf(as []Alert) []string {
	out := []string{}
	for _, a := range as {
		out = append(out, a.Type)
	}
	return out
}

func TestLatencyAlertRaisesOnceAndClears(t *testing.T) {
	e := newTestMonitor(t, Options{SyncTarget: 50 * time.Millisecond})
	active := func() float64 {
		return testutil.ToFloat64(e.m.prom.alertActive.WithLabelValues(AlertHighLatency))
	}
	total := func() float64 {
		return testutil.ToFloat64(e.m.prom.alertsTotal.WithLabelValues(AlertHighLatency))
	}

	// p99 exactly at 2x target is not above it.
	for range 100 {
		e.m.ObserveSyncLatency(100 * time.Millisecond)
	}
	if s := e.tick(1); len(s.Alerts) != 0 {
		t.Fatalf("p99 = 2x target raised %v", s.Alerts)
	}

	for range 100 {
		e.m.ObserveSyncLatency(150 * time.Millisecond)
	}
	e.tick(2)
	snap := e.m.Snapshot()
	if len(snap.Alerts) != 1 || snap.Alerts[0].Type != AlertHighLatency {
		t.Fatalf("alerts = %v, want [high_latency]", alertTypesOf(snap.Alerts))
	}
	a := snap.Alerts[0]
	within(t, "alert value", a.Value, 150, 0.01)
	if a.Threshold != 100 || a.Unit != "ms" || a.Since != t0.Add(20*time.Second).UnixMilli() {
		t.Errorf("alert = %+v, want threshold 100 ms, since the second interval", a)
	}
	if active() != 1 || total() != 1 {
		t.Errorf("prometheus active=%v total=%v, want 1 and 1", active(), total())
	}

	// Still high: stays active, same start, not counted or logged again.
	for range 100 {
		e.m.ObserveSyncLatency(300 * time.Millisecond)
	}
	e.tick(3)
	snap = e.m.Snapshot()
	if len(snap.Alerts) != 1 || snap.Alerts[0].Since != a.Since {
		t.Fatalf("persisting alert = %+v, want it still active with the same since", snap.Alerts)
	}
	within(t, "persisting alert value", snap.Alerts[0].Value, 300, 0.01)
	if total() != 1 {
		t.Errorf("alerts_total = %v after a persisting alert, want 1", total())
	}
	if n := len(e.logs.find("WARN", "performance alert raised")); n != 1 {
		t.Errorf("raised was logged %d times over two high intervals, want once", n)
	}

	for range 100 {
		e.m.ObserveSyncLatency(20 * time.Millisecond)
	}
	e.tick(4)
	if snap := e.m.Snapshot(); len(snap.Alerts) != 0 {
		t.Errorf("alerts after latency recovered = %v, want none", alertTypesOf(snap.Alerts))
	}
	if active() != 0 || total() != 1 {
		t.Errorf("prometheus active=%v total=%v after clearing, want 0 and 1", active(), total())
	}
	cleared := e.logs.find("INFO", "performance alert cleared")
	if len(cleared) != 1 || cleared[0]["type"] != AlertHighLatency {
		t.Errorf("cleared logs = %v, want one for high_latency", cleared)
	}
}

func TestNoLatencySamplesNoLatencyAlert(t *testing.T) {
	e := newTestMonitor(t, Options{SyncTarget: time.Nanosecond})
	if s := e.tick(1); len(s.Alerts) != 0 {
		t.Errorf("an interval without latency samples raised %v", s.Alerts)
	}
}

func TestResourceAlerts(t *testing.T) {
	e := newTestMonitor(t, Options{})
	e.proc.set(func(p *procStats) {
		p.heapAlloc = 600 << 20
		p.cpu = 9 * time.Second // over a 10 s interval: 90% of a core
	})
	s := e.tick(1)
	if got := strings.Join(s.Alerts, ","); got != "high_memory,high_cpu" {
		t.Fatalf("alerts = %q, want high_memory,high_cpu", got)
	}
	within(t, "cpu percent", s.CPUPercent, 90, 1e-9)
	if e.m.Snapshot().Alerts[0].Severity != "critical" {
		t.Errorf("memory alert is not critical: %+v", e.m.Snapshot().Alerts[0])
	}

	e.proc.set(func(p *procStats) {
		p.heapAlloc = 100 << 20
		p.cpu += 2 * time.Second // 20%
	})
	s = e.tick(2)
	if len(s.Alerts) != 0 {
		t.Errorf("alerts after recovery = %v, want none", s.Alerts)
	}
	within(t, "cpu percent", s.CPUPercent, 20, 1e-9)
	if n := len(e.logs.find("INFO", "performance alert cleared")); n != 2 {
		t.Errorf("%d clearings logged, want 2", n)
	}
}

func TestErrorAndRateLimitAlertsCoverOneInterval(t *testing.T) {
	e := newTestMonitor(t, Options{})
	e.m.ConnError()
	e.m.RateLimited()
	e.m.RateLimited()
	s := e.tick(1)
	if got := strings.Join(s.Alerts, ","); got != "connection_errors,rate_limit_violations" {
		t.Fatalf("alerts = %q, want connection_errors,rate_limit_violations", got)
	}
	snap := e.m.Snapshot()
	if snap.Alerts[1].Value != 2 || snap.RateLimit.ViolationsLastInterval != 2 {
		t.Errorf("rate-limit alert %+v / stats %+v, want 2 violations", snap.Alerts[1], snap.RateLimit)
	}

	if s := e.tick(2); len(s.Alerts) != 0 {
		t.Errorf("a quiet interval keeps alerts %v", s.Alerts)
	}
	if got := e.m.Snapshot().RateLimit; got.Violations != 2 || got.ViolationsLastInterval != 0 {
		t.Errorf("rate limit = %+v, want 2 in total, 0 in the last interval", got)
	}
}

func TestHistoryRingKeepsRetentionOverInterval(t *testing.T) {
	e := newTestMonitor(t, Options{Interval: time.Second, Retention: 5 * time.Second})
	for i := 1; i <= 8; i++ {
		e.m.MessageIn()
		e.tick(i)
	}
	all, err := e.m.History(context.Background(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 {
		t.Fatalf("history holds %d samples, want 5 (retention / interval)", len(all))
	}
	for i, s := range all {
		if want := t0.Add(time.Duration(i+4) * time.Second).UnixMilli(); s.Timestamp != want {
			t.Errorf("sample %d at %d, want %d (the newest five, oldest first)", i, s.Timestamp, want)
		}
		if s.MessagesIn != 1 {
			t.Errorf("sample %d has %d messages, want 1 per interval", i, s.MessagesIn)
		}
	}

	recent, _ := e.m.History(context.Background(), t0.Add(7*time.Second))
	if len(recent) != 2 {
		t.Errorf("history since the 7th second has %d samples, want 2", len(recent))
	}
}

func TestMemoryHistoryHoldsAtLeastOne(t *testing.T) {
	h := NewMemoryHistory(0)
	ctx := context.Background()
	_ = h.Append(ctx, Sample{Timestamp: 1})
	_ = h.Append(ctx, Sample{Timestamp: 2})
	got, _ := h.Range(ctx, time.Time{})
	if len(got) != 1 || got[0].Timestamp != 2 {
		t.Errorf("capacity-0 ring holds %v, want just the newest sample", got)
	}
}

type flakyHistory struct {
	MemoryHistory
	fail bool
}

func (f *flakyHistory) Append(ctx context.Context, s Sample) error {
	if f.fail {
		return errors.New("redis: connection refused")
	}
	return f.MemoryHistory.Append(ctx, s)
}

func TestFailingHistoryIsLoggedOnTransitions(t *testing.T) {
	store := &flakyHistory{MemoryHistory: *NewMemoryHistory(10), fail: true}
	e := newTestMonitor(t, Options{History: store})
	for i := 1; i <= 3; i++ {
		e.tick(i)
	}
	if n := len(e.logs.find("WARN", "metrics history append failed; samples are lost until it recovers")); n != 1 {
		t.Errorf("three failing appends logged %d warnings, want 1", n)
	}
	store.fail = false
	e.tick(4)
	e.tick(5)
	if n := len(e.logs.find("INFO", "metrics history append recovered")); n != 1 {
		t.Errorf("recovery logged %d times, want 1", n)
	}
	got, _ := e.m.History(context.Background(), time.Time{})
	if len(got) != 2 {
		t.Errorf("history has %d samples, want the 2 appended after recovery", len(got))
	}
}

func TestSnapshotJSONShape(t *testing.T) {
	m := New(Options{
		InstanceID: "test-1",
		Logger:     slog.New(slog.DiscardHandler),
		Gauges:     func() Gauges { return Gauges{Sessions: 3, PlayingSessions: 1, Members: 9} },
	})
	b, err := json.Marshal(m.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	get := func(path string) any {
		var v any = doc
		for _, k := range strings.Split(path, ".") {
			obj, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = obj[k]
		}
		return v
	}
	for _, path := range []string{
		"connections.active", "connections.total", "connections.errors", "connections.rejected",
		"messages.in", "messages.out", "messages.perSecond",
		"syncLatency.avgMs", "syncLatency.p50Ms", "syncLatency.p95Ms", "syncLatency.p99Ms", "syncLatency.maxMs", "syncLatency.samples",
		"eventProcessing.p99Ms", "memory.heapAllocBytes", "memory.rssBytes", "cpu.percent",
		"rateLimit.violations", "errors.byCode.NOT_LEADER", "clientSync.absOffset.p95Ms",
		"runtime.goroutines", "runtime.numGC", "runtime.gcPauseTotalMs", "timestamp",
	} {
		if get(path) == nil {
			t.Errorf("%s missing from %s", path, b)
		}
	}
	if alerts, ok := doc["alerts"].([]any); !ok || len(alerts) != 0 {
		t.Errorf("alerts = %v, want an empty array (not null)", doc["alerts"])
	}
	if get("instanceId") != "test-1" || get("sessions.active") != 3.0 || get("sessions.playing") != 1.0 || get("sessions.members") != 9.0 {
		t.Errorf("instance or sessions wrong in %s", b)
	}
	if g, ok := get("runtime.goroutines").(float64); !ok || g < 1 {
		t.Errorf("runtime.goroutines = %v, want the live count", get("runtime.goroutines"))
	}
	if h, ok := get("memory.heapAllocBytes").(float64); !ok || h <= 0 {
		t.Errorf("memory.heapAllocBytes = %v, want the real heap", get("memory.heapAllocBytes"))
	}
}

func TestPrometheusExposition(t *testing.T) {
	e := newTestMonitor(t, Options{InstanceID: "i-1", Gauges: func() Gauges { return Gauges{Sessions: 2, Members: 5} }})
	e.m.ConnOpened()
	e.m.ConnRejected(protocol.RejectTransport)
	e.m.MessageIn()
	e.m.MessagesOut(4)
	e.m.RateLimited()
	e.m.ProtocolError("SESSION_FULL")
	e.m.ObserveSyncLatency(3 * time.Millisecond)
	e.m.ObserveEventProcessing(200 * time.Microsecond)
	e.m.ObserveClientSync(time.Millisecond, 6*time.Millisecond, time.Millisecond)
	e.tick(1)

	reg := e.m.Gatherer()
	for _, name := range []string{
		"bandsync_connections_active", "bandsync_connections_total", "bandsync_connection_errors_total",
		"bandsync_connections_rejected_total", "bandsync_messages_received_total", "bandsync_messages_sent_total",
		"bandsync_sync_latency_seconds", "bandsync_event_processing_seconds",
		"bandsync_client_clock_offset_seconds", "bandsync_client_rtt_seconds", "bandsync_client_jitter_seconds",
		"bandsync_rate_limit_violations_total", "bandsync_protocol_errors_total",
		"bandsync_sessions_active", "bandsync_sessions_playing", "bandsync_session_members",
		"bandsync_cpu_percent", "bandsync_alert_active", "bandsync_alerts_total", "bandsync_instance_info",
		"go_goroutines", "process_cpu_seconds_total",
	} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n == 0 {
			t.Errorf("%s: %d series, err %v", name, n, err)
		}
	}

	want := `
# HELP bandsync_messages_sent_total Socket.IO events sent to clients.
# TYPE bandsync_messages_sent_total counter
bandsync_messages_sent_total 4
# HELP bandsync_session_members Members across all sessions.
# TYPE bandsync_session_members gauge
bandsync_session_members 5
# HELP bandsync_sync_latency_seconds One-way latency to clients (round trip / 2) from heartbeats and latency probes.
# TYPE bandsync_sync_latency_seconds histogram
bandsync_sync_latency_seconds_bucket{le="0.0001"} 0
bandsync_sync_latency_seconds_bucket{le="0.00025"} 0
bandsync_sync_latency_seconds_bucket{le="0.0005"} 0
bandsync_sync_latency_seconds_bucket{le="0.001"} 0
bandsync_sync_latency_seconds_bucket{le="0.0025"} 0
bandsync_sync_latency_seconds_bucket{le="0.005"} 1
bandsync_sync_latency_seconds_bucket{le="0.01"} 1
bandsync_sync_latency_seconds_bucket{le="0.025"} 1
bandsync_sync_latency_seconds_bucket{le="0.05"} 1
bandsync_sync_latency_seconds_bucket{le="0.1"} 1
bandsync_sync_latency_seconds_bucket{le="0.25"} 1
bandsync_sync_latency_seconds_bucket{le="0.5"} 1
bandsync_sync_latency_seconds_bucket{le="1"} 1
bandsync_sync_latency_seconds_bucket{le="+Inf"} 1
bandsync_sync_latency_seconds_sum 0.003
bandsync_sync_latency_seconds_count 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"bandsync_messages_sent_total", "bandsync_session_members", "bandsync_sync_latency_seconds"); err != nil {
		t.Error(err)
	}

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "bandsync_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

// allHistory keeps every sample, however many intervals a test closes.
type allHistory struct {
	mu      sync.Mutex
	samples []Sample
}

func (h *allHistory) Append(_ context.Context, s Sample) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.samples = append(h.samples, s)
	return nil
}

func (h *allHistory) Range(context.Context, time.Time) ([]Sample, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Sample(nil), h.samples...), nil
}

// TestConcurrentUseLosesNothing hammers the hot path while intervals close,
// snapshots are taken and Prometheus scrapes; every sample must be accounted
// for in exactly one interval.
func TestConcurrentUseLosesNothing(t *testing.T) {
	store := &allHistory{}
	m := New(Options{History: store, Logger: slog.New(slog.DiscardHandler)})
	const workers, perWorker = 8, 5000
	var wg sync.WaitGroup
	done := make(chan struct{})
	var ticks sync.WaitGroup
	ticks.Add(1)
	go func() {
		defer ticks.Done()
		for {
			select {
			case <-done:
				return
			default:
				m.Tick(time.Now())
				_ = m.Snapshot()
				if _, err := m.Gatherer().Gather(); err != nil {
					t.Error(err)
				}
			}
		}
	}()
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				m.ConnOpened()
				m.MessageIn()
				m.MessagesOut(2)
				m.ObserveSyncLatency(time.Duration(w*perWorker+i) * time.Microsecond)
				m.ObserveEventProcessing(time.Millisecond)
				m.ProtocolError("NOT_LEADER")
				m.RateLimited()
				m.ConnClosed()
			}
		})
	}
	wg.Wait()
	close(done)
	ticks.Wait()
	m.Tick(time.Now())

	const n = workers * perWorker
	snap := m.Snapshot()
	if snap.Connections.Total != n || snap.Connections.Active != 0 || snap.Messages.In != n || snap.Messages.Out != 2*n ||
		snap.Errors.ByCode["NOT_LEADER"] != n || snap.RateLimit.Violations != n {
		t.Errorf("totals after %d operations per kind: %+v %+v %+v %+v", n, snap.Connections, snap.Messages, snap.Errors, snap.RateLimit)
	}
	hist, _ := m.History(context.Background(), time.Time{})
	var samples, msgs uint64
	for _, s := range hist {
		samples += s.SyncLatency.Samples
		msgs += s.MessagesIn
	}
	if samples != n || msgs != n {
		t.Errorf("intervals account for %d latency samples and %d messages, want %d each", samples, msgs, n)
	}
}

func TestRunSamplesUntilCancelled(t *testing.T) {
	m := New(Options{Interval: 5 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		m.Run(ctx)
		close(stopped)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, _ := m.History(ctx, time.Time{})
		if len(h) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run recorded fewer than 2 samples in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}
