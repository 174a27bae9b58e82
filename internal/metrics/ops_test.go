package metrics_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/bandsync/bandsync/internal/httpapi"
	"github.com/bandsync/bandsync/internal/metrics"
)

// exposition is what GET /metrics serves a Prometheus scraper: every sample
// name, and each family's HELP and TYPE.
type exposition struct {
	samples map[string]bool
	help    map[string]string
	typ     map[string]string
}

func scrape(t *testing.T) exposition {
	t.Helper()
	mon := metrics.New(metrics.Options{InstanceID: "test"})
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Metrics: httpapi.MetricsFrom(mon)}))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/metrics", nil)
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %s %s", resp.Status, b)
	}
	e := exposition{samples: map[string]bool{}, help: map[string]string{}, typ: map[string]string{}}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# HELP "):
			name, help, _ := strings.Cut(strings.TrimPrefix(line, "# HELP "), " ")
			e.help[name] = help
		case strings.HasPrefix(line, "# TYPE "):
			name, typ, _ := strings.Cut(strings.TrimPrefix(line, "# TYPE "), " ")
			e.typ[name] = typ
		case line == "" || strings.HasPrefix(line, "#"):
		default:
			e.samples[line[:strings.IndexAny(line, "{ ")]] = true
		}
	}
	if len(e.typ) < 20 {
		t.Fatalf("only %d metric families in /metrics", len(e.typ))
	}
	return e
}

// unitless are gauges that count things or state a condition; a unit in
// their name would be noise ("_count" is reserved for histograms).
var unitless = map[string]bool{
	"bandsync_connections_active": true, "bandsync_sessions_active": true, "bandsync_sessions_playing": true,
	"bandsync_session_members": true, "bandsync_alert_active": true,
	"go_goroutines": true, "go_threads": true, "go_memstats_heap_objects": true,
	"process_open_fds": true, "process_max_fds": true,
}

var unitSuffix = regexp.MustCompile(`_(seconds|bytes|percent|ratio|threads|info)$`)

func TestEveryMetricHasHelpAndAUnit(t *testing.T) {
	e := scrape(t)
	for name, typ := range e.typ {
		if strings.TrimSpace(e.help[name]) == "" {
			t.Errorf("%s has no HELP text", name)
		}
		switch {
		case typ == "counter":
			if !strings.HasSuffix(name, "_total") {
				t.Errorf("counter %s does not end in _total", name)
			}
		case typ == "histogram" || typ == "summary":
			if !regexp.MustCompile(`_(seconds|bytes)$`).MatchString(name) {
				t.Errorf("%s %s does not name its unit (_seconds, _bytes)", typ, name)
			}
		case !unitSuffix.MatchString(name) && !unitless[name]:
			t.Errorf("%s %s does not name its unit (_seconds, _bytes, _percent, _ratio, _info) and is not a known count", typ, name)
		}
	}
}

// metricRef finds the metric names a PromQL query refers to. Functions,
// label names and keywords never start with these prefixes.
var metricRef = regexp.MustCompile(`\b(?:bandsync|go|process)_[a-z0-9_]+\b`)

func exposed(e exposition, name string) bool { return e.samples[name] }

func TestGrafanaDashboardQueriesExposedMetrics(t *testing.T) {
	e := scrape(t)
	raw, err := os.ReadFile("../../deploy/grafana/bandsync-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID           string `json:"uid"`
		Title         string `json:"title"`
		SchemaVersion int    `json:"schemaVersion"`
		Templating    struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID         int             `json:"id"`
			Type       string          `json:"type"`
			Title      string          `json:"title"`
			Datasource json.RawMessage `json:"datasource"`
			GridPos    struct{ X, Y, W, H int }
			Targets    []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("the dashboard is not valid JSON: %v", err)
	}
	if dash.UID == "" || dash.Title == "" || dash.SchemaVersion < 30 || len(dash.Panels) == 0 {
		t.Fatalf("not an importable dashboard: uid %q, title %q, schemaVersion %d, %d panels", dash.UID, dash.Title, dash.SchemaVersion, len(dash.Panels))
	}
	check := func(where, expr string) {
		refs := metricRef.FindAllString(expr, -1)
		if len(refs) == 0 {
			t.Errorf("%s: query %q names no BandSync, Go or process metric", where, expr)
		}
		for _, m := range refs {
			if !exposed(e, m) {
				t.Errorf("%s: query names %s, which /metrics does not expose", where, m)
			}
		}
	}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		where := "panel " + p.Title
		if ids[p.ID] {
			t.Errorf("%s: duplicate panel id %d", where, p.ID)
		}
		ids[p.ID] = true
		if p.Type == "" || len(p.Datasource) == 0 || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("%s: incomplete panel (type %q, datasource %s, gridPos %+v)", where, p.Type, p.Datasource, p.GridPos)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s has no query", where)
		}
		for _, q := range p.Targets {
			check(where, q.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		check("variable "+v.Name, v.Definition)
	}
}

func TestAlertRulesQueryExposedMetrics(t *testing.T) {
	e := scrape(t)
	raw, err := os.ReadFile("../../deploy/prometheus/bandsync-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	// promtool checks the syntax (scripts/test.sh); this checks the names.
	n := 0
	for _, m := range metricRef.FindAllString(string(raw), -1) {
		n++
		if !exposed(e, m) {
			t.Errorf("an alert rule names %s, which /metrics does not expose", m)
		}
	}
	if n < 7 {
		t.Errorf("the alert rules name only %d metrics", n)
	}
}
