package precision

import (
	"math"
	"testing"
)

// A device 2 ms behind for the whole song, which then jumps 6 ms ahead
// and stays 4 ms ahead until 1.5 s before the end.
func TestScoreDevice(t *testing.T) {
	tr := Truth{StartsAt: 1000, StartPos: 500}
	w := Window{From: 1000, To: 11_000, Events: []float64{6000}}
	var ss []Sample
	for T := 1000.0; T <= 11_000; T += 50 {
		e := -2.0
		if T >= 6000 && T < 9500 {
			e = 4
		}
		ss = append(ss, Sample{T: T, Pos: tr.At(T) + e, ErrEst: 3})
	}
	d := ScoreDevice("x", ss, tr, w, 50)
	if d.N != 201 {
		t.Fatalf("n = %d, want 201", d.N)
	}
	if d.P50 != 2 || d.Max != 4 || d.P99 != 4 {
		t.Errorf("p50/p99/max = %v/%v/%v, want 2/4/4", d.P50, d.P99, d.Max)
	}
	if math.Abs(d.MaxJump-6) > 1e-9 {
		t.Errorf("max jump = %v, want 6", d.MaxJump)
	}
	if d.Recovery[0] != 9450-6000 {
		t.Errorf("recovery = %v, want %v (the last sample above 3 ms)", d.Recovery[0], 9450-6000)
	}
	if d.FirstP99 != 2 || d.LastP99 != 4 {
		t.Errorf("first/last third p99 = %v/%v, want 2/4 (growth shows)", d.FirstP99, d.LastP99)
	}
	// errorMs 3 covers the 2 ms error but not the 4 ms one.
	if d.Covered <= 0.5 || d.Covered >= 1 {
		t.Errorf("covered = %v", d.Covered)
	}
}

func TestScorePairMatchesInstants(t *testing.T) {
	w := Window{From: 0, To: 1000}
	a := []Sample{{T: 0, Pos: 0}, {T: 50, Pos: 50}, {T: 100, Pos: 101}}
	b := []Sample{{T: 50, Pos: 49}, {T: 100, Pos: 100}, {T: 150, Pos: 900}} // T=150: a has none
	p := ScorePair("a", "b", a, b, w)
	if p.N != 2 || p.Max != 1 || p.P99 != 1 {
		t.Errorf("pair = %+v, want n 2, max 1", p)
	}
}

func TestCheckFlagsMisses(t *testing.T) {
	ok := Result{Scenario: "jitter", Devices: []DeviceScore{{Name: "lan", N: 1, P99: 0.5}, {Name: "wifi", N: 1, P99: 2, FirstP99: 2, LastP99: 2.5}},
		Pairs: []PairScore{{A: "lan", B: "wifi", P99: 2}}}
	if m := Check([]Result{ok}); len(m) != 0 {
		t.Fatalf("misses on a passing run: %v", m)
	}
	bad := ok
	bad.Pairs = []PairScore{{A: "lan", B: "wifi", P99: 3.5}}
	bad.Devices = []DeviceScore{{Name: "lan", N: 1, P99: 1.2}, {Name: "wifi", N: 1, FirstP99: 2, LastP99: 9}}
	if m := Check([]Result{bad}); len(m) != 3 {
		t.Errorf("want 3 misses (pair, clean device, growth), got %v", m)
	}
	stall := Result{Scenario: "stall", Devices: []DeviceScore{{Name: "wifi", N: 1, MaxJump: 7, Recovery: []float64{12_000}}}}
	if m := Check([]Result{stall}); len(m) != 2 {
		t.Errorf("want 2 misses (jump, recovery), got %v", m)
	}
}
