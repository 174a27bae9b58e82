package precision

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Event changes the wifi device's network during the song, At after the
// start.
type Event struct {
	At time.Duration
	// Stall holds both directions for this long (the event's instant, for
	// recovery, is the stall's end); otherwise the link changes to Up/Down.
	Stall    time.Duration
	Up, Down Dist
}

// Scenario is one network for the "wifi" device; the "lan" device is
// always on a clean proxy and the leader connects directly.
type Scenario struct {
	Name     string
	Desc     string
	Up, Down Dist
	Events   []Event
}

// Scenarios is the full matrix for a song of duration d.
func Scenarios(d time.Duration) []Scenario {
	jitter := Dist{MeanMs: 50, StddevMs: 30}
	lan := Dist{MeanMs: 2, StddevMs: 1}
	return []Scenario{
		{Name: "clean", Desc: "clean LAN: no added delay"},
		{Name: "jitter", Desc: "N(50,30) ms each way", Up: jitter, Down: jitter},
		{Name: "asym", Desc: "asymmetric: 10 ms up, 60 ms down (N(.,1))", Up: Dist{10, 1}, Down: Dist{60, 1}},
		{Name: "stall", Desc: "N(2,1) each way, a 5 s stall both ways at 1/3", Up: lan, Down: lan,
			Events: []Event{{At: d / 3, Stall: 5 * time.Second}}},
		{Name: "change", Desc: "N(2,1), then N(50,30) from 1/3, then N(2,1) again from 2/3", Up: lan, Down: lan,
			Events: []Event{{At: d / 3, Up: jitter, Down: jitter}, {At: 2 * d / 3, Up: lan, Down: lan}}},
	}
}

// Config says what to run.
type Config struct {
	Node         string        // node binary
	DeviceScript string        // test/e2e/precision/device.mjs
	WifiScript   string        // another script for the "wifi" device (browser-device.mjs), or ""
	ServerURL    string        // the server, http://host:port
	Duration     time.Duration // of play, scored
	Warmup       time.Duration // joined and syncing before the leader plays
	SampleMs     float64
	Seed         uint64
	SamplesDir   string // when set, each device's samples are written here as CSV
	Log          *slog.Logger
	// Wrap, when set, is put in front of a device's command line, e.g.
	// "ip netns exec HOST" to run it on its own network host
	// (internal/netfault).
	Wrap func(device string) []string
	// LinkHost is the address the links listen on (127.0.0.1 when empty).
	LinkHost string
	// OnLine, when set, sees every line a device prints (its JSON, and
	// the "ev" field), on the device's reader goroutine.
	OnLine func(device, ev string, line []byte)
}

// Result is one scenario's scores.
type Result struct {
	Scenario string         `json:"scenario"`
	Desc     string         `json:"desc"`
	Devices  []DeviceScore  `json:"devices"`
	Pairs    []PairScore    `json:"pairs"`
	Sync     map[string]any `json:"finalSync"`
}

// Device is one SDK device process (DeviceScript) joined to a session.
type Device struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan map[string]json.RawMessage
	mu    sync.Mutex
	ss    []Sample
	final map[string]any
	done  chan struct{}
}

// StartDevice starts device name, which joins session at url with role
// (leader or follower) and reports its samples. Its "synced" line says it
// is joined and its clock is synced (Await).
func StartDevice(ctx context.Context, cfg Config, name, url, session, role string) (*Device, error) {
	script := cfg.DeviceScript
	if name == "wifi" && cfg.WifiScript != "" {
		script = cfg.WifiScript
	}
	argv := []string{cfg.Node, script, url, session, name, role, fmt.Sprint(cfg.SampleMs)}
	if cfg.Wrap != nil {
		argv = append(cfg.Wrap(name), argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &limitedWriter{w: &stderr, n: 64 << 10}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start device %s: %w", name, err)
	}
	d := &Device{name: name, cmd: cmd, stdin: stdin, lines: make(chan map[string]json.RawMessage, 16), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		defer close(d.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var m map[string]json.RawMessage
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			var ev string
			_ = json.Unmarshal(m["ev"], &ev)
			if cfg.OnLine != nil {
				cfg.OnLine(name, ev, sc.Bytes())
			}
			switch ev {
			case "s":
				var s Sample
				if json.Unmarshal(sc.Bytes(), &s) == nil {
					d.mu.Lock()
					d.ss = append(d.ss, s)
					d.mu.Unlock()
				}
			case "bye":
				var f struct {
					Sync map[string]any `json:"sync"`
				}
				_ = json.Unmarshal(sc.Bytes(), &f)
				d.mu.Lock()
				d.final = f.Sync
				d.mu.Unlock()
			case "sync", "connection":
				cfg.Log.Debug("device", "name", name, "line", sc.Text())
			case "state":
				// One per snapshot, for OnLine only: queued, they would
				// crowd out the lines Await waits for.
			default:
				select {
				case d.lines <- m:
				default:
				}
			}
		}
		if err := cmd.Wait(); err != nil && ctx.Err() == nil {
			cfg.Log.Warn("device exited", "name", name, "err", err, "stderr", stderr.String())
		}
	}()
	return d, nil
}

// Await waits for the device's next line with ev == want; an "error" line
// before it fails.
func (d *Device) Await(ctx context.Context, want string, timeout time.Duration) (map[string]json.RawMessage, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case m, ok := <-d.lines:
			if !ok {
				return nil, fmt.Errorf("device %s exited before %q", d.name, want)
			}
			var ev string
			_ = json.Unmarshal(m["ev"], &ev)
			if ev == want {
				return m, nil
			}
			if ev == "error" {
				return nil, fmt.Errorf("device %s: %s", d.name, m["message"])
			}
		case <-t.C:
			return nil, fmt.Errorf("device %s: no %q within %s", d.name, want, timeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Send writes one command line to the device.
func (d *Device) Send(line string) error {
	_, err := io.WriteString(d.stdin, line+"\n")
	return err
}

// Stop asks the device to quit, and kills it after 5 s.
func (d *Device) Stop() {
	_ = d.Send("quit")
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// RunScenario plays one song with three devices and scores them.
func RunScenario(ctx context.Context, cfg Config, sc Scenario) (Result, error) {
	res := Result{Scenario: sc.Name, Desc: sc.Desc}
	if cfg.WifiScript != "" {
		res.Desc += "; wifi device: " + filepath.Base(cfg.WifiScript)
	}
	host := strings.TrimPrefix(strings.TrimPrefix(cfg.ServerURL, "http://"), "https://")
	net := NewNetwork(cfg.Seed)
	linkHost := cfg.LinkHost
	if linkHost == "" {
		linkHost = "127.0.0.1"
	}
	lanLink, err := net.LinkAt(sc.Name+"-lan", linkHost+":0", host)
	if err != nil {
		return res, err
	}
	defer lanLink.Close()
	wifi, err := net.LinkAt(sc.Name+"-wifi", linkHost+":0", host)
	if err != nil {
		return res, err
	}
	defer wifi.Close()
	if err := wifi.SetDelay(sc.Up, sc.Down); err != nil {
		return res, err
	}

	session := fmt.Sprintf("precision-%s-%d", sc.Name, time.Now().UnixNano()%1e9)
	names := []string{"leader", "lan", "wifi"}
	urls := []string{cfg.ServerURL, "http://" + lanLink.Addr(), "http://" + wifi.Addr()}
	devs := make([]*Device, 0, len(names))
	defer func() {
		for _, d := range devs {
			d.Stop()
		}
	}()
	for i, n := range names {
		role := "follower"
		if i == 0 {
			role = "leader"
		}
		d, err := StartDevice(ctx, cfg, n, urls[i], session, role)
		if err != nil {
			return res, err
		}
		devs = append(devs, d)
		if _, err := d.Await(ctx, "synced", 30*time.Second); err != nil {
			return res, err
		}
	}
	cfg.Log.Info("devices synced; warming up", "scenario", sc.Name, "warmup", cfg.Warmup)
	if err := sleep(ctx, cfg.Warmup); err != nil {
		return res, err
	}
	const leadMs = 2000
	if err := devs[0].Send(fmt.Sprintf("play %d", leadMs)); err != nil {
		return res, err
	}
	m, err := devs[0].Await(ctx, "played", 10*time.Second)
	if err != nil {
		return res, err
	}
	var played struct {
		Position  float64  `json:"positionMs"`
		ServerTS  float64  `json:"serverTimestamp"`
		StartsAt  *float64 `json:"startsAt"`
		IsPlaying bool     `json:"isPlaying"`
	}
	if err := json.Unmarshal(m["state"], &played); err != nil || played.StartsAt == nil || !played.IsPlaying {
		return res, fmt.Errorf("leader's play answer has no scheduled start: %s", m["state"])
	}
	truth := Truth{StartsAt: *played.StartsAt, StartPos: played.Position - max(0, played.ServerTS-*played.StartsAt)}
	start := time.UnixMicro(int64(truth.StartsAt * 1000))
	w := Window{From: truth.StartsAt + 20, To: truth.StartsAt + float64(cfg.Duration.Milliseconds())}

	for _, ev := range sc.Events {
		if err := sleep(ctx, time.Until(start.Add(ev.At))); err != nil {
			return res, err
		}
		if ev.Stall > 0 {
			cfg.Log.Info("stall", "scenario", sc.Name, "for", ev.Stall)
			if err := wifi.Stall(true); err != nil {
				return res, err
			}
			if err := sleep(ctx, ev.Stall); err != nil {
				return res, err
			}
			if err := wifi.Stall(false); err != nil {
				return res, err
			}
			w.Events = append(w.Events, float64(time.Now().UnixMicro())/1000)
			continue
		}
		cfg.Log.Info("link change", "scenario", sc.Name, "up", ev.Up, "down", ev.Down)
		if err := wifi.SetDelay(ev.Up, ev.Down); err != nil {
			return res, err
		}
		w.Events = append(w.Events, float64(time.Now().UnixMicro())/1000)
	}
	if err := sleep(ctx, time.Until(start.Add(cfg.Duration+time.Second))); err != nil {
		return res, err
	}
	for _, d := range devs {
		d.Stop()
	}
	samples := make(map[string][]Sample)
	res.Sync = map[string]any{}
	for _, d := range devs {
		d.mu.Lock()
		samples[d.name] = d.ss
		res.Sync[d.name] = d.final
		d.mu.Unlock()
		res.Devices = append(res.Devices, ScoreDevice(d.name, samples[d.name], truth, w, cfg.SampleMs))
		if cfg.SamplesDir != "" {
			if err := writeSamples(filepath.Join(cfg.SamplesDir, sc.Name+"-"+d.name+".csv"), samples[d.name], truth); err != nil {
				cfg.Log.Warn("samples", "err", err)
			}
		}
	}
	devs = nil
	for i := range names {
		for j := i + 1; j < len(names); j++ {
			res.Pairs = append(res.Pairs, ScorePair(names[i], names[j], samples[names[i]], samples[names[j]], w))
		}
	}
	return res, nil
}

// writeSamples writes T (ms from the start), the error and errorMs.
func writeSamples(path string, ss []Sample, tr Truth) error {
	var b strings.Builder
	b.WriteString("t_ms,error_ms,error_est_ms\n")
	for _, s := range ss {
		fmt.Fprintf(&b, "%.0f,%.4f,%.4f\n", s.T-tr.StartsAt, s.Pos-tr.At(s.T), s.ErrEst)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// limitedWriter keeps at most n bytes (a device's stderr, for the log).
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return len(p), nil
	}
	q := p
	if len(q) > l.n {
		q = q[:l.n]
	}
	l.n -= len(q)
	if _, err := l.w.Write(q); err != nil {
		return 0, errors.Join(err)
	}
	return len(p), nil
}
