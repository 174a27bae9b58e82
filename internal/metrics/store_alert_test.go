package metrics

import (
	"sync/atomic"
	"testing"
	"time"
)

// While the configured shared store is unreachable the store_unavailable
// alert holds (with how long it has been down), and it clears when the
// store is back.
func TestStoreUnavailableAlert(t *testing.T) {
	var downMs atomic.Int64
	now := time.Now()
	// Quiet resource readings, so only the store can raise an alert.
	m := newMonitor(Options{Interval: time.Second, StoreUnavailable: func() time.Time {
		if ms := downMs.Load(); ms > 0 {
			return time.UnixMilli(ms)
		}
		return time.Time{}
	}}, func() procStats { return procStats{} }, now)
	if s := m.Tick(now.Add(time.Second)); len(s.Alerts) != 0 {
		t.Fatalf("alerts with the store up: %v", s.Alerts)
	}
	downMs.Store(now.UnixMilli())
	s := m.Tick(now.Add(3 * time.Second))
	if !contains(s.Alerts, AlertStoreUnavailable) {
		t.Fatalf("no %s alert while the store is down: %v", AlertStoreUnavailable, s.Alerts)
	}
	for _, a := range m.Snapshot().Alerts {
		if a.Type == AlertStoreUnavailable && (a.Value < 2.9 || a.Severity != "critical") {
			t.Fatalf("alert %+v: want about 3 s down, critical", a)
		}
	}
	downMs.Store(0)
	if s := m.Tick(now.Add(4 * time.Second)); contains(s.Alerts, AlertStoreUnavailable) {
		t.Fatalf("alert still active after the store came back: %v", s.Alerts)
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
