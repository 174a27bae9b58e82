package benchclient

import (
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var s Samples
	// 100 down to 1, so sorting is exercised.
	for i := 100; i >= 1; i-- {
		s.Add(time.Duration(i))
	}
	for p, want := range map[float64]time.Duration{50: 50, 95: 95, 99: 99, 99.9: 100, 100: 100, 1: 1, 0.5: 1, 0: 1} {
		if got := s.Percentile(p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}

	// With 10 samples, p99 is the largest (rank ceil(9.9) = 10), p50 the
	// fifth: a nearest-rank percentile is always an observed value.
	s.Reset()
	for i := 1; i <= 10; i++ {
		s.Add(time.Duration(i) * time.Millisecond)
	}
	if got := s.Percentile(99); got != 10*time.Millisecond {
		t.Errorf("p99 of 10 = %v", got)
	}
	if got := s.Percentile(50); got != 5*time.Millisecond {
		t.Errorf("p50 of 10 = %v", got)
	}
	sum := s.Summarize()
	if sum.Count != 10 || sum.Max != 10*time.Millisecond || sum.P95 != 10*time.Millisecond {
		t.Errorf("Summarize = %+v", sum)
	}
}

func TestPercentileEdges(t *testing.T) {
	var s Samples
	if s.Percentile(99) != 0 || s.Max() != 0 || s.Len() != 0 {
		t.Error("empty samples must report zeros")
	}
	s.Add(7)
	if s.Percentile(1) != 7 || s.Percentile(99) != 7 {
		t.Error("one sample is every percentile")
	}
	// Negative values (a clock step) sort below zero, not as huge ones.
	s.Add(-3)
	if s.Percentile(50) != -3 || s.Max() != 7 {
		t.Errorf("p50 = %v, max = %v", s.Percentile(50), s.Max())
	}
}

func TestMergeAndAddAfterPercentile(t *testing.T) {
	var a, b Samples
	a.Add(5)
	a.Add(1)
	_ = a.Percentile(50) // sorts
	a.Add(3)             // must invalidate the sort
	b.Add(4)
	b.Add(2)
	a.Merge(&b)
	if a.Len() != 5 {
		t.Fatalf("Len = %d", a.Len())
	}
	for i, p := range []float64{20, 40, 60, 80, 100} {
		if got := a.Percentile(p); got != time.Duration(i+1) {
			t.Errorf("p%v = %v, want %v", p, got, i+1)
		}
	}
}
