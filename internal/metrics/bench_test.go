package metrics

import (
	"log/slog"
	"testing"
	"time"
)

func benchMonitor() *Monitor {
	return New(Options{Logger: slog.New(slog.DiscardHandler)})
}

func BenchmarkMessageIn(b *testing.B) {
	m := benchMonitor()
	b.ReportAllocs()
	for b.Loop() {
		m.MessageIn()
	}
}

func BenchmarkMessageInParallel(b *testing.B) {
	m := benchMonitor()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.MessageIn()
		}
	})
}

func BenchmarkObserveSyncLatency(b *testing.B) {
	m := benchMonitor()
	b.ReportAllocs()
	d := 17 * time.Millisecond
	for b.Loop() {
		m.ObserveSyncLatency(d)
	}
}

func BenchmarkObserveSyncLatencyParallel(b *testing.B) {
	m := benchMonitor()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		d := time.Duration(0)
		for pb.Next() {
			d = (d + 37*time.Microsecond) % time.Second
			m.ObserveSyncLatency(d)
		}
	})
}

func BenchmarkTick(b *testing.B) {
	m := benchMonitor()
	for i := range 10000 {
		m.ObserveSyncLatency(time.Duration(i) * time.Microsecond)
	}
	b.ReportAllocs()
	now := time.Now()
	for b.Loop() {
		now = now.Add(10 * time.Second)
		m.Tick(now)
	}
}
