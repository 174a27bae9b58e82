package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/bandsync/bandsync/internal/benchclient"
)

// row is one line of results. Durations are in milliseconds.
type row struct {
	Scenario string   `json:"scenario"`
	Target   string   `json:"target"` // "server" or "relay"
	Shape    string   `json:"shape"`
	Metric   string   `json:"metric"`
	Count    int      `json:"count"`
	P50      *float64 `json:"p50Ms,omitempty"`
	P95      *float64 `json:"p95Ms,omitempty"`
	P99      *float64 `json:"p99Ms,omitempty"`
	Max      *float64 `json:"maxMs,omitempty"`
	Missing  *int64   `json:"missing,omitempty"`
	Delivery *float64 `json:"delivery,omitempty"`
	// RatioToRelay is this row's p99 over the relay's p99 for the same
	// shape in the same run.
	RatioToRelay *float64       `json:"ratioToRelay,omitempty"`
	Note         string         `json:"note,omitempty"`
	Extra        map[string]any `json:"extra,omitempty"`
	summary      benchclient.Summary
}

type report struct {
	Target   string    `json:"target"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Rows     []*row    `json:"results"`
	// Knee is the ramp's last good step, when a ramp ran.
	Knee string `json:"knee,omitempty"`
}

func (r *report) add(x *row) *row {
	r.Rows = append(r.Rows, x)
	return x
}

func ms(d time.Duration) *float64 {
	v := math.Round(float64(d)/1e3) / 1e3 // microsecond resolution
	return &v
}

func ptr[T any](v T) *T { return &v }

// distRow builds a row from a distribution.
func distRow(scenario, target, shape, metric string, s *benchclient.Samples) *row {
	sum := s.Summarize()
	r := &row{Scenario: scenario, Target: target, Shape: shape, Metric: metric, Count: sum.Count, summary: sum}
	if sum.Count > 0 {
		r.P50, r.P95, r.P99, r.Max = ms(sum.P50), ms(sum.P95), ms(sum.P99), ms(sum.Max)
	}
	return r
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *report) writeTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tTARGET\tSHAPE\tMETRIC\tCOUNT\tP50 ms\tP95 ms\tP99 ms\tMAX ms\tMISSING\tDELIVERY\tVS RELAY\tNOTE")
	for _, x := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			x.Scenario, x.Target, x.Shape, x.Metric, x.Count,
			fnum(x.P50, 3), fnum(x.P95, 3), fnum(x.P99, 3), fnum(x.Max, 3),
			fint(x.Missing), fpct(x.Delivery), fratio(x.RatioToRelay), x.Note)
	}
	_ = tw.Flush()
	if r.Knee != "" {
		fmt.Fprintln(w, "knee:", r.Knee)
	}
}

func fnum(v *float64, prec int) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', prec, 64)
}

func fint(v *int64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatInt(*v, 10)
}

func fpct(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v*100, 'f', 2, 64) + "%"
}

func fratio(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 2, 64) + "x"
}
