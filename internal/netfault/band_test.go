//go:build linux && (netfault || chaos)

package netfault

// The pieces of a band on the lab: a redis-server, bandsync instances
// (the built binary, in Redis mode) and SDK devices (Node,
// test/e2e/precision/device.mjs), each on a host of its own, and a
// sampler that reads every instance's and every device's view of the
// session several times a second.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/precision"
)

var serverBin string

func TestMain(m *testing.M) {
	code := func() int {
		if bin := os.Getenv("BANDSYNC_BIN"); bin != "" {
			serverBin = bin
			return m.Run()
		}
		if Available() != nil {
			return m.Run() // every test skips (or fails under CI) by itself
		}
		dir, err := os.MkdirTemp("", "netfault-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		serverBin = filepath.Join(dir, "bandsync")
		// Without -race: the race detector's pauses would be measured as
		// network faults.
		build := exec.Command("go", "build", "-o", serverBin, "github.com/bandsync/bandsync/cmd/bandsync")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "netfault: building bandsync:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// deviceConfig is the precision harness's device configuration, checked:
// Node and test/e2e's node_modules (npm ci there) must be present.
func deviceConfig(t *testing.T, log *slog.Logger) precision.Config {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		SkipOrFail(t, "node not found (Node.js 20)")
	}
	e2e := filepath.Join(repoRoot(), "test", "e2e")
	if _, err := os.Stat(filepath.Join(e2e, "node_modules", "socket.io-client")); err != nil {
		SkipOrFail(t, "test/e2e/node_modules missing (cd test/e2e && npm ci)")
	}
	return precision.Config{
		Node:         node,
		DeviceScript: filepath.Join(e2e, "precision", "device.mjs"),
		SampleMs:     20,
		Seed:         1,
		Log:          log,
	}
}

// testLog writes to the test's log when BANDSYNC_TEST_LOG=1, else nowhere.
func testLog(t *testing.T) *slog.Logger {
	if os.Getenv("BANDSYNC_TEST_LOG") == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// instance is one bandsync process on a host.
type instance struct {
	name string
	host *Host
	url  string
	log  *bytes.Buffer
}

// startInstance runs the server binary on h against Redis at redisAddr,
// and waits for /health.
func startInstance(t *testing.T, l *Lab, h *Host, redisAddr string, env ...string) *instance {
	t.Helper()
	in := &instance{name: h.Name, host: h, url: "http://" + h.IP + ":3001", log: &bytes.Buffer{}}
	cmd := h.Command(serverBin)
	cmd.Env = append(os.Environ(), "PORT=3001", "HOST=", "REDIS_URL=redis://"+redisAddr+"/0",
		"INSTANCE_ID="+h.Name, "LOG_LEVEL=info",
		// The sampler reads /sessions/{id} many times a second from one
		// address; it is an observer, not a client to be limited.
		"HTTP_RATE_LIMIT_MAX_REQUESTS=1000000")
	cmd.Env = append(cmd.Env, env...)
	w := &lockedWriter{w: in.log}
	cmd.Stdout, cmd.Stderr = w, w
	if err := l.Start(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("BANDSYNC_TEST_LOG") != "" {
			w.mu.Lock()
			s := in.log.String()
			w.mu.Unlock()
			if len(s) > 8000 {
				s = s[len(s)-8000:]
			}
			t.Logf("instance %s log (tail):\n%s", in.name, s)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(in.url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return in
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s not healthy after 15 s: %v", h.Name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// view is one party's idea of the session at one instant.
type view struct {
	Leader  string  // socket id of the leader; "" none
	Version int64   // state version
	Pos     float64 // the anchor's position
	TS      float64 // the anchor's server timestamp
	// StartsAt is a scheduled start (epoch ms; 0 none): the position
	// holds until then.
	StartsAt float64
	Playing  bool
}

// at is the position the view puts at epoch-ms instant t. Snapshots are
// projected to the instant they are taken, so two views of one state have
// different anchors but the same position at any instant.
func (v view) at(t float64) float64 {
	if !v.Playing {
		return v.Pos
	}
	return v.Pos + max(0, t-max(v.TS, v.StartsAt))
}

// sessionView reads an instance's copy of the session.
func sessionView(ctx context.Context, in *instance, session string) (view, error) {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", in.url+"/sessions/"+session, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return view{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return view{}, fmt.Errorf("%s: HTTP %d", in.name, resp.StatusCode)
	}
	var st struct {
		Leader    *string  `json:"leaderSocketId"`
		Version   int64    `json:"version"`
		Pos       float64  `json:"positionMs"`
		TS        float64  `json:"serverTimestamp"`
		StartsAt  *float64 `json:"startsAt"`
		IsPlaying bool     `json:"isPlaying"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return view{}, err
	}
	v := view{Version: st.Version, Pos: st.Pos, TS: st.TS, Playing: st.IsPlaying}
	if st.StartsAt != nil {
		v.StartsAt = *st.StartsAt
	}
	if st.Leader != nil {
		v.Leader = *st.Leader
	}
	return v, nil
}

// devState is what a device last said.
type devState struct {
	ID          string // its socket id
	Role        string
	View        view
	Connected   bool
	Disconnects int // times the connection dropped and the SDK began reconnecting
	Recovered   bool
	Seeks       []view // the states acknowledged seeks answered with
	Refused     int    // claims refused
	// Unavailable counts commands refused with STORE_UNAVAILABLE: the
	// device's instance could not pass them on to the band.
	Unavailable int
	Errors      []string // every refusal the device printed, "CODE: message"
	Claimed     int      // claims granted
}

// band is the devices of one session and what they said.
type band struct {
	t       *testing.T
	cfg     precision.Config
	session string
	mu      sync.Mutex
	devs    map[string]*devState
	procs   map[string]*precision.Device
}

func newBand(t *testing.T, cfg precision.Config, hosts map[string]*Host) *band {
	b := &band{t: t, session: fmt.Sprintf("netfault-%d", time.Now().UnixNano()%1e9),
		devs: map[string]*devState{}, procs: map[string]*precision.Device{}}
	cfg.Wrap = func(name string) []string { return hosts[name].Wrap() }
	cfg.OnLine = b.onLine
	b.cfg = cfg
	t.Cleanup(func() {
		b.mu.Lock()
		procs := b.procs
		b.procs = map[string]*precision.Device{}
		b.mu.Unlock()
		for _, d := range procs {
			d.Stop()
		}
	})
	return b
}

func (b *band) onLine(name, ev string, line []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.devs[name]
	if d == nil {
		d = &devState{}
		b.devs[name] = d
	}
	switch ev {
	case "connection":
		var m struct {
			State     string `json:"state"`
			Recovered bool   `json:"recovered"`
		}
		_ = json.Unmarshal(line, &m)
		d.Connected = m.State == "connected"
		switch m.State {
		case "connected":
			d.Recovered = m.Recovered
		case "reconnecting":
			// Not "disconnected": that is the device's own close at the end.
			d.Disconnects++
		}
	case "state":
		var m struct {
			ID      *string  `json:"id"`
			Role    *string  `json:"role"`
			Leader  *string  `json:"leader"`
			V       int64    `json:"v"`
			Playing bool     `json:"playing"`
			Pos     float64  `json:"pos"`
			TS      float64  `json:"ts"`
			Starts  *float64 `json:"startsAt"`
		}
		_ = json.Unmarshal(line, &m)
		if m.ID != nil {
			d.ID = *m.ID
		}
		if m.Role != nil {
			d.Role = *m.Role
		}
		d.View = view{Version: m.V, Pos: m.Pos, TS: m.TS, Playing: m.Playing}
		if m.Starts != nil {
			d.View.StartsAt = *m.Starts
		}
		if m.Leader != nil {
			d.View.Leader = *m.Leader
		}
	case "seeked":
		var m struct {
			State struct {
				V       int64    `json:"version"`
				Pos     float64  `json:"positionMs"`
				TS      float64  `json:"serverTimestamp"`
				Playing bool     `json:"isPlaying"`
				Starts  *float64 `json:"startsAt"`
			} `json:"state"`
		}
		_ = json.Unmarshal(line, &m)
		v := view{Version: m.State.V, Pos: m.State.Pos, TS: m.State.TS, Playing: m.State.Playing}
		if m.State.Starts != nil {
			v.StartsAt = *m.State.Starts
		}
		d.Seeks = append(d.Seeks, v)
	case "error":
		var m struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(line, &m)
		d.Errors = append(d.Errors, m.Code+": "+m.Message)
		if m.Code == "STORE_UNAVAILABLE" {
			d.Unavailable++
		}
	case "claimed":
		d.Claimed++
	case "refused":
		d.Refused++
	}
}

// join starts the named devices at once (each url, role), and waits until
// every one is joined with a synced clock.
func (b *band) join(ctx context.Context, specs ...devSpec) {
	b.t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(specs))
	for i, s := range specs {
		// The leader joins first so that it claims the lead.
		d, err := precision.StartDevice(ctx, b.cfg, s.name, s.url, b.session, s.role)
		if err != nil {
			b.t.Fatal(err)
		}
		b.mu.Lock()
		b.procs[s.name] = d
		b.mu.Unlock()
		if i == 0 {
			if _, err := d.Await(ctx, "synced", 30*time.Second); err != nil {
				b.t.Fatal(err)
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = d.Await(ctx, "synced", 30*time.Second)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.t.Fatal(err)
		}
	}
}

type devSpec struct{ name, url, role string }

// start starts one device and waits until it is joined and synced; unlike
// join it may run on any goroutine.
func (b *band) start(ctx context.Context, s devSpec) error {
	d, err := precision.StartDevice(ctx, b.cfg, s.name, s.url, b.session, s.role)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.procs[s.name] = d
	b.mu.Unlock()
	_, err = d.Await(ctx, "synced", 30*time.Second)
	return err
}

func (b *band) send(name, line string) {
	b.mu.Lock()
	d := b.procs[name]
	b.mu.Unlock()
	if err := d.Send(line); err != nil {
		b.t.Errorf("device %s: %v", name, err)
	}
}

// play has the named device start the song 300 ms from now and waits for
// the answer.
func (b *band) play(name string) {
	b.t.Helper()
	b.send(name, "play 300")
	b.mu.Lock()
	d := b.procs[name]
	b.mu.Unlock()
	if _, err := d.Await(context.Background(), "played", 10*time.Second); err != nil {
		b.t.Fatal(err)
	}
}

func (b *band) state(name string) devState {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d := b.devs[name]; d != nil {
		s := *d
		s.Seeks = append([]view(nil), d.Seeks...)
		s.Errors = append([]string(nil), d.Errors...)
		return s
	}
	return devState{}
}

func (b *band) names() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ns []string
	for n := range b.devs {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

// sample is one round of views: every instance's, and every connected
// device's.
type sample struct {
	at        time.Time
	instances map[string]view
	errs      map[string]error // instances that did not answer
	devices   map[string]devState
}

// leaders is every distinct leader the sample's parties believe in: the
// leader each instance's copy names, and each connected device that
// believes it leads (skip: a device that cannot know better, cut off).
func (s sample) leaders(skip string) []string {
	set := map[string]bool{}
	for _, v := range s.instances {
		if v.Leader != "" {
			set[v.Leader] = true
		}
	}
	for n, d := range s.devices {
		if n != skip && d.Connected && d.Role == "leader" && d.ID != "" {
			set[d.ID] = true
		}
	}
	var ls []string
	for l := range set {
		ls = append(ls, l)
	}
	sort.Strings(ls)
	return ls
}

// agreed says whether every instance and every device hold the same
// version, leader and anchor.
func (s sample) agreed() bool {
	var ref *view
	t := float64(s.at.UnixMilli())
	check := func(v view) bool {
		if ref == nil {
			ref = &v
			return true
		}
		return v.Version == ref.Version && v.Leader == ref.Leader && v.Playing == ref.Playing &&
			math.Abs(v.at(t)-ref.at(t)) <= 2
	}
	for _, v := range s.instances {
		if !check(v) {
			return false
		}
	}
	for _, d := range s.devices {
		if !d.Connected || !check(d.View) {
			return false
		}
	}
	return ref != nil
}

func (s sample) String() string {
	var b strings.Builder
	for _, n := range sortedKeys(s.instances) {
		v := s.instances[n]
		fmt.Fprintf(&b, "instance %s: v%d leader=%q pos=%.0f@%.0f start=%.0f playing=%v; ", n, v.Version, v.Leader, v.Pos, v.TS, v.StartsAt, v.Playing)
	}
	for _, n := range sortedKeys(s.errs) {
		fmt.Fprintf(&b, "instance %s: %v; ", n, s.errs[n])
	}
	for _, n := range sortedKeys(s.devices) {
		d := s.devices[n]
		fmt.Fprintf(&b, "device %s (%s, %s, connected=%v): v%d leader=%q pos=%.0f@%.0f start=%.0f playing=%v; ", n, d.ID, d.Role, d.Connected, d.View.Version, d.View.Leader, d.View.Pos, d.View.TS, d.View.StartsAt, d.View.Playing)
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// sampleNow reads every instance (in parallel) and every device.
func (b *band) sampleNow(ctx context.Context, ins []*instance) sample {
	s := sample{at: time.Now(), instances: map[string]view{}, errs: map[string]error{}, devices: map[string]devState{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := sessionView(ctx, in, b.session)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				s.errs[in.name] = err
				return
			}
			s.instances[in.name] = v
		}()
	}
	wg.Wait()
	for _, n := range b.names() {
		s.devices[n] = b.state(n)
	}
	return s
}

// sampler samples every period until stop, and reports every sample.
func (b *band) sampler(ctx context.Context, ins []*instance, period time.Duration, each func(sample)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(period)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				each(b.sampleNow(ctx, ins))
			}
		}
	}()
	return func() { cancel(); <-done }
}

// converge waits until a sample agrees everywhere and returns it (or the
// last sample, and false).
func (b *band) converge(ctx context.Context, ins []*instance, within time.Duration) (sample, bool) {
	start := time.Now()
	var last sample
	for time.Since(start) < within {
		last = b.sampleNow(ctx, ins)
		if len(last.instances) == len(ins) && last.agreed() {
			return last, true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return last, false
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}
