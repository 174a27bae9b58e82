package precision

import (
	"math"
	"slices"
)

// Sample is what one device said at one instant: its positionAt() for the
// machine-clock instant T (epoch ms, the server's clock too), and the
// sync.errorMs it published then (negative: none yet).
type Sample struct {
	T      float64 `json:"T"`
	Pos    float64 `json:"p"`
	ErrEst float64 `json:"e"`
}

// Truth is the server's anchor for a song started with a scheduled start
// and left alone: the position is StartPos at StartsAt and runs with the
// clock.
type Truth struct {
	StartsAt float64
	StartPos float64
}

// At is the true position at machine-clock instant t.
func (tr Truth) At(t float64) float64 { return tr.StartPos + max(0, t-tr.StartsAt) }

// Window is the part of the song that is scored, and the instants where
// the network changed (a stall's end, a link change), from which recovery
// is timed.
type Window struct {
	From, To float64
	Events   []float64
}

// DeviceScore is one device's error against the truth, in ms.
type DeviceScore struct {
	Name string  `json:"name"`
	N    int     `json:"n"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	// P99 over the first and the last third of the window: growth of the
	// error over time shows as Last > First.
	FirstP99 float64 `json:"firstThirdP99"`
	LastP99  float64 `json:"lastThirdP99"`
	// MaxJump is the largest step of the position between two consecutive
	// samples beyond the time that passed: what the chart shows as a jump.
	MaxJump float64 `json:"maxJump"`
	// Recovery is, per event, how long after it the error was above 3 ms
	// for the last time (0: never above).
	Recovery []float64 `json:"recoveryMs"`
	// Covered is the share of samples whose |error| was within the
	// published errorMs (+0.5 ms): whether sync.errorMs can be trusted.
	Covered float64 `json:"errorMsCovers"`
	ErrEst  float64 `json:"errorMsP50"`
}

// PairScore is how far two devices' positions are apart at the same
// instants, in ms.
type PairScore struct {
	A   string  `json:"a"`
	B   string  `json:"b"`
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// RecoverBelowMs is the error a device must be back under after an event.
const RecoverBelowMs = 3

func inWindow(ss []Sample, w Window) []Sample {
	var out []Sample
	for _, s := range ss {
		if s.T >= w.From && s.T <= w.To {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b Sample) int { return cmpFloat(a.T, b.T) })
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Percentile is the nearest-rank p-th percentile of xs (NaN when empty).
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// ScoreDevice scores one device's samples. sampleMs is the sampling
// period: consecutive samples further apart than two periods (the device
// missed some) are not counted as a jump.
func ScoreDevice(name string, ss []Sample, tr Truth, w Window, sampleMs float64) DeviceScore {
	ss = inWindow(ss, w)
	d := DeviceScore{Name: name, N: len(ss), Recovery: make([]float64, len(w.Events))}
	if len(ss) == 0 {
		d.P50, d.P99, d.Max = math.NaN(), math.NaN(), math.NaN()
		return d
	}
	abs := make([]float64, len(ss))
	var first, last, est []float64
	third := (w.To - w.From) / 3
	covered := 0
	for i, s := range ss {
		e := s.Pos - tr.At(s.T)
		abs[i] = math.Abs(e)
		d.Max = max(d.Max, abs[i])
		switch {
		case s.T < w.From+third:
			first = append(first, abs[i])
		case s.T >= w.To-third:
			last = append(last, abs[i])
		}
		if s.ErrEst >= 0 {
			est = append(est, s.ErrEst)
			if abs[i] <= s.ErrEst+0.5 {
				covered++
			}
		}
		if i > 0 && s.T-ss[i-1].T <= 2*sampleMs {
			jump := math.Abs((s.Pos - ss[i-1].Pos) - (s.T - ss[i-1].T))
			d.MaxJump = max(d.MaxJump, jump)
		}
	}
	d.P50, d.P99 = Percentile(abs, 50), Percentile(abs, 99)
	d.FirstP99, d.LastP99 = Percentile(first, 99), Percentile(last, 99)
	d.Covered = float64(covered) / float64(len(ss))
	d.ErrEst = Percentile(est, 50)
	for k, ev := range w.Events {
		end := w.To
		if k+1 < len(w.Events) {
			end = w.Events[k+1]
		}
		for i, s := range ss {
			if s.T >= ev && s.T < end && abs[i] > RecoverBelowMs {
				d.Recovery[k] = s.T - ev
			}
		}
	}
	return d
}

// ScorePair compares two devices at the instants both reported.
func ScorePair(a, b string, sa, sb []Sample, w Window) PairScore {
	at := make(map[float64]float64, len(sa))
	for _, s := range inWindow(sa, w) {
		at[s.T] = s.Pos
	}
	var diffs []float64
	for _, s := range inWindow(sb, w) {
		if p, ok := at[s.T]; ok {
			diffs = append(diffs, math.Abs(p-s.Pos))
		}
	}
	ps := PairScore{A: a, B: b, N: len(diffs), P50: Percentile(diffs, 50), P99: Percentile(diffs, 99)}
	for _, x := range diffs {
		ps.Max = max(ps.Max, x)
	}
	return ps
}
