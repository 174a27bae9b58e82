package metrics

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The latency histogram is log-linear (HDR style): values below 2^subBits ns
// get one bucket each, and every power of two above that is split into
// 2^subBits equal buckets. With subBits = 6 a bucket is at most 1/64 of its
// lower bound wide, so reporting its midpoint is within 0.8% of any sample in
// it. Counters only ever grow; an interval's distribution is the difference
// between two readings, which lets writers stay lock-free and lose nothing
// when an interval is closed.
const (
	subBits    = 6
	subCount   = 1 << subBits
	maxExp     = 40 // 2^40 ns is about 18 minutes; anything longer shares the last bucket
	numBuckets = subCount + (maxExp-subBits)*subCount
)

func bucketOf(ns int64) int {
	if ns < subCount {
		return int(max(ns, 0))
	}
	exp := bits.Len64(uint64(ns)) - 1
	if exp >= maxExp {
		return numBuckets - 1
	}
	shift := exp - subBits
	return (exp-subBits)*subCount + int(uint64(ns)>>shift)
}

// bucketMid is the value reported for samples that fell into bucket i.
func bucketMid(i int) float64 {
	if i < subCount {
		return float64(i)
	}
	g := (i - subCount) / subCount
	m := (i-subCount)%subCount + subCount
	lower := uint64(m) << g
	width := uint64(1) << g
	return float64(lower) + float64(width-1)/2
}

type logHist struct {
	counts [numBuckets]atomic.Uint64
	sumNs  atomic.Uint64
	// maxNs is the largest sample of the running interval; closing an
	// interval swaps it back to zero.
	maxNs atomic.Int64
}

func (h *logHist) observe(d time.Duration) {
	ns := max(int64(d), 0)
	h.counts[bucketOf(ns)].Add(1)
	h.sumNs.Add(uint64(ns))
	for {
		cur := h.maxNs.Load()
		if ns <= cur || h.maxNs.CompareAndSwap(cur, ns) {
			return
		}
	}
}

// histMark is a reading of a logHist's counters at the start of an interval.
type histMark struct {
	counts [numBuckets]uint64
	sumNs  uint64
}

// stats summarises the samples observed since mark. With advance, mark moves
// to now and the interval maximum is reset, closing the interval.
func (h *logHist) stats(mark *histMark, advance bool) LatencyStats {
	var delta [numBuckets]uint64
	var n uint64
	for i := range h.counts {
		c := h.counts[i].Load()
		delta[i] = c - mark.counts[i]
		n += delta[i]
		if advance {
			mark.counts[i] = c
		}
	}
	sum := h.sumNs.Load()
	sumDelta := sum - mark.sumNs
	var maxNs int64
	if advance {
		mark.sumNs = sum
		maxNs = h.maxNs.Swap(0)
	} else {
		maxNs = h.maxNs.Load()
	}
	if n == 0 {
		return LatencyStats{}
	}

	qs := [...]float64{0.50, 0.95, 0.99}
	var out [len(qs)]float64
	var cum uint64
	qi := 0
	for i := 0; i < numBuckets && qi < len(qs); i++ {
		cum += delta[i]
		for qi < len(qs) && cum >= rank(qs[qi], n) {
			out[qi] = bucketMid(i)
			qi++
		}
	}
	// A bucket midpoint may lie above the largest sample in it; never report
	// a percentile above the maximum actually seen. maxNs can be zero when a
	// sample was counted but its max update landed after the reading.
	if maxNs > 0 {
		for i := range out {
			out[i] = math.Min(out[i], float64(maxNs))
		}
	}
	return LatencyStats{
		AvgMs:   nsToMs(float64(sumDelta) / float64(n)),
		P50Ms:   nsToMs(out[0]),
		P95Ms:   nsToMs(out[1]),
		P99Ms:   nsToMs(out[2]),
		MaxMs:   nsToMs(float64(maxNs)),
		Samples: n,
	}
}

// rank is the 1-based position of quantile q among n sorted samples
// (nearest-rank definition).
func rank(q float64, n uint64) uint64 {
	r := uint64(math.Ceil(q * float64(n)))
	return min(max(r, 1), n)
}

// nsToMs converts to milliseconds rounded to the microsecond: finer digits are
// noise in a JSON report.
func nsToMs(ns float64) float64 {
	return math.Round(ns/1e3) / 1e3
}
