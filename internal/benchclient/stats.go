package benchclient

import (
	"math"
	"slices"
	"time"
)

// Samples keeps every observation, so percentiles are exact rather than
// bucketed: even the largest run (a few million ticks) fits in tens of
// megabytes, and exactness keeps a 2 ms p99 from being a histogram
// artefact. The zero value is ready to use; it is not safe for concurrent
// use.
type Samples struct {
	v      []time.Duration
	sorted bool
}

// Add records one observation.
func (s *Samples) Add(d time.Duration) {
	s.v = append(s.v, d)
	s.sorted = false
}

// Merge adds all of o's observations.
func (s *Samples) Merge(o *Samples) {
	if len(o.v) == 0 {
		return
	}
	s.v = append(s.v, o.v...)
	s.sorted = false
}

// Reset drops all observations, keeping the storage.
func (s *Samples) Reset() {
	s.v = s.v[:0]
	s.sorted = true
}

// Len is the number of observations.
func (s *Samples) Len() int { return len(s.v) }

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100): the
// smallest observation that at least p% of observations do not exceed.
// It is an observed value, never an interpolation. It returns 0 when
// there are no observations.
func (s *Samples) Percentile(p float64) time.Duration {
	if len(s.v) == 0 {
		return 0
	}
	if !s.sorted {
		slices.Sort(s.v)
		s.sorted = true
	}
	rank := int(math.Ceil(p / 100 * float64(len(s.v))))
	rank = min(max(rank, 1), len(s.v))
	return s.v[rank-1]
}

// Max returns the largest observation, or 0 when there is none.
func (s *Samples) Max() time.Duration { return s.Percentile(100) }

// Summary is the usual digest of a Samples.
type Summary struct {
	Count              int
	P50, P95, P99, Max time.Duration
}

// Summarize digests s.
func (s *Samples) Summarize() Summary {
	return Summary{Count: s.Len(), P50: s.Percentile(50), P95: s.Percentile(95), P99: s.Percentile(99), Max: s.Max()}
}
