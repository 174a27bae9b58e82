package netfault

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// nsPrefix starts every namespace a Lab creates; the pid that follows lets
// a later run tell a dead run's leftovers from a live one's.
const nsPrefix = "netfault-"

// Lab is one private network: a bridge in a namespace of its own (the
// switch), the hosts plugged into it, and an uplink from the test
// process's namespace, which has the subnet's first address.
type Lab struct {
	t      testing.TB
	subnet int    // the lab's network is 10.213.<subnet>.0/24
	ns     string // namespace prefix: netfault-<pid>-<subnet>-
	uplink string // the uplink's name in the test's namespace
	lock   *os.File

	mu    sync.Mutex
	hosts []*Host
	procs []*exec.Cmd
}

// Host is one machine of the lab: a namespace whose eth0 is plugged into
// the lab's bridge.
type Host struct {
	lab  *Lab
	Name string
	NS   string // the namespace, for ip netns exec
	IP   string
}

// Available says why a Lab cannot be built here (nil: it can).
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("not root (network namespaces, veth pairs and iptables need it)")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (apt-get install iproute2 iptables)", tool)
		}
	}
	return nil
}

// Require skips the test when a Lab cannot be built, or fails it under CI,
// where nothing may be skipped.
func Require(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		SkipOrFail(t, err.Error())
	}
}

// SkipOrFail skips the test for a missing prerequisite, or fails it under
// CI, where nothing may be skipped.
func SkipOrFail(t testing.TB, why string) {
	t.Helper()
	if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
		t.Fatalf("network-fault test cannot run under CI=%s: %s", ci, why)
	}
	t.Skipf("SKIPPED network-fault test: %s", why)
}

// New builds an empty lab and removes it when the test ends.
func New(t testing.TB) *Lab {
	t.Helper()
	Require(t)
	sweep()
	l := &Lab{t: t}
	if err := l.claimSubnet(); err != nil {
		t.Fatal(err)
	}
	l.ns = fmt.Sprintf("%s%d-%d-", nsPrefix, os.Getpid(), l.subnet)
	l.uplink = fmt.Sprintf("nf%dup", l.subnet)
	t.Cleanup(l.close)
	sw := l.ns + "sw"
	steps := [][]string{
		{"ip", "netns", "add", sw},
		{"ip", "-n", sw, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", sw, "link", "set", "br0", "up"},
		// A stale uplink of a killed run on this subnet would be in the way.
		{"sh", "-c", "ip link del " + l.uplink + " 2>/dev/null; true"},
		{"ip", "link", "add", l.uplink, "type", "veth", "peer", "name", "up", "netns", sw},
		{"ip", "-n", sw, "link", "set", "dev", "up", "master", "br0", "up"},
		{"ip", "addr", "add", l.addr(1) + "/24", "dev", l.uplink},
		{"ip", "link", "set", l.uplink, "up"},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func (l *Lab) addr(n int) string { return fmt.Sprintf("10.213.%d.%d", l.subnet, n) }

// RootIP is the test process's address on the lab: where a proxy the
// test runs listens for the hosts.
func (l *Lab) RootIP() string { return l.addr(1) }

// claimSubnet takes the first 10.213.x.0/24 no other live lab holds. The
// lock is an flock, so it is released when the process dies however it
// dies.
func (l *Lab) claimSubnet() error {
	dir := filepath.Join(os.TempDir(), "netfault-locks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for x := 1; x < 255; x++ {
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(x)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return err
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close()
			continue
		}
		l.subnet, l.lock = x, f
		return nil
	}
	return errors.New("netfault: every 10.213.x.0/24 is held by another lab")
}

// Host adds a host named name (a few letters: it is part of a namespace
// name) and plugs it into the bridge.
func (l *Lab) Host(name string) *Host {
	l.t.Helper()
	l.mu.Lock()
	n := len(l.hosts) + 2
	h := &Host{lab: l, Name: name, NS: l.ns + name, IP: l.addr(n)}
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	port := fmt.Sprintf("p%d", n)
	steps := [][]string{
		{"ip", "netns", "add", h.NS},
		{"ip", "link", "add", "eth0", "netns", h.NS, "type", "veth", "peer", "name", port, "netns", l.ns + "sw"},
		{"ip", "-n", l.ns + "sw", "link", "set", "dev", port, "master", "br0", "up"},
		{"ip", "-n", h.NS, "addr", "add", h.IP + "/24", "dev", "eth0"},
		{"ip", "-n", h.NS, "link", "set", "eth0", "up"},
		{"ip", "-n", h.NS, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			l.t.Fatal(err)
		}
	}
	return h
}

// Command is name args... run on the host (ip netns exec), in a process
// group of its own; Start it with Lab.Start so the lab stops it. It is
// also killed if the test process dies first (a go test timeout skips
// the cleanup); the next lab removes the namespaces such a run leaves.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Wrap is the command-line prefix that runs a program on the host.
func (h *Host) Wrap() []string { return []string{"ip", "netns", "exec", h.NS} }

// Start starts cmd and has the lab kill it (and its process group) at the
// end of the test if it is still running.
func (l *Lab) Start(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	l.mu.Lock()
	l.procs = append(l.procs, cmd)
	l.mu.Unlock()
	return nil
}

// Partition drops every packet between h and each of peers, both ways,
// until the returned heal is called (heal is also safe to call twice).
// Established connections are not reset: they see silence, as behind a
// dead router.
func (h *Host) Partition(peers ...*Host) (heal func() error) {
	h.lab.t.Helper()
	var rules [][]string
	for _, p := range peers {
		rules = append(rules,
			[]string{"INPUT", "-s", p.IP, "-j", "DROP"},
			[]string{"OUTPUT", "-d", p.IP, "-j", "DROP"})
	}
	h.iptables("-A", rules)
	var once sync.Once
	return func() error {
		var err error
		once.Do(func() { err = h.tryIptables("-D", rules) })
		return err
	}
}

// Loss drops each packet in and out of eth0 with probability p (0 removes
// the loss).
func (h *Host) Loss(p float64) {
	h.lab.t.Helper()
	const chain = "NETFAULT_LOSS"
	_ = run("ip", "netns", "exec", h.NS, "iptables", "-D", "INPUT", "-i", "eth0", "-j", chain)
	_ = run("ip", "netns", "exec", h.NS, "iptables", "-D", "OUTPUT", "-o", "eth0", "-j", chain)
	_ = run("ip", "netns", "exec", h.NS, "iptables", "-F", chain)
	_ = run("ip", "netns", "exec", h.NS, "iptables", "-X", chain)
	if p <= 0 {
		return
	}
	prob := strconv.FormatFloat(p, 'f', 4, 64)
	for _, s := range [][]string{
		{"-N", chain},
		{"-A", chain, "-m", "statistic", "--mode", "random", "--probability", prob, "-j", "DROP"},
		{"-A", "INPUT", "-i", "eth0", "-j", chain},
		{"-A", "OUTPUT", "-o", "eth0", "-j", chain},
	} {
		if err := run(append([]string{"ip", "netns", "exec", h.NS, "iptables"}, s...)...); err != nil {
			h.lab.t.Fatal(err)
		}
	}
}

// LinkDown sets the host's eth0 down (true) or up again: the cable is out.
func (h *Host) LinkDown(down bool) {
	h.lab.t.Helper()
	state := "up"
	if down {
		state = "down"
	}
	if err := run("ip", "-n", h.NS, "link", "set", "eth0", state); err != nil {
		h.lab.t.Fatal(err)
	}
}

// Counters is the host's eth0 packet counters (for a test to show the
// fault was real).
func (h *Host) Counters() (string, error) {
	out, err := exec.Command("ip", "netns", "exec", h.NS, "iptables", "-L", "-v", "-n", "-x").CombinedOutput()
	return string(out), err
}

func (h *Host) iptables(op string, rules [][]string) {
	h.lab.t.Helper()
	if err := h.tryIptables(op, rules); err != nil {
		h.lab.t.Fatal(err)
	}
}

func (h *Host) tryIptables(op string, rules [][]string) error {
	var errs []error
	for _, r := range rules {
		errs = append(errs, run(append([]string{"ip", "netns", "exec", h.NS, "iptables", op}, r...)...))
	}
	return errors.Join(errs...)
}

// close stops the lab's processes and removes its namespaces (the veth
// pairs, addresses and iptables rules in them go too).
func (l *Lab) close() {
	l.mu.Lock()
	procs, hosts := l.procs, l.hosts
	l.procs, l.hosts = nil, nil
	l.mu.Unlock()
	for _, c := range procs {
		if c.Process != nil && c.ProcessState == nil {
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			done := make(chan struct{})
			go func() { _ = c.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
			}
		}
	}
	var errs []error
	for _, h := range hosts {
		errs = append(errs, removeNamespace(h.NS))
	}
	errs = append(errs, removeNamespace(l.ns+"sw"))
	// The uplink goes with its peer in the switch's namespace, but not
	// necessarily at once.
	for i := 0; exec.Command("ip", "link", "show", l.uplink).Run() == nil; i++ {
		if i == 20 {
			errs = append(errs, run("ip", "link", "del", l.uplink))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := errors.Join(errs...); err != nil {
		l.t.Errorf("netfault: cleaning up the lab: %v", err)
	}
	if l.lock != nil {
		l.lock.Close()
	}
}

// removeNamespace kills whatever still runs in ns (a process started there
// by other means than Lab.Start) and deletes it.
func removeNamespace(ns string) error {
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	var err error
	// A killed process may take a moment to leave the namespace; the
	// delete itself does not wait for it and succeeds.
	for i := 0; i < 3; i++ {
		if err = run("ip", "netns", "del", ns); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// sweep removes the namespaces of labs whose process is gone.
func sweep() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
			continue
		}
		rest := strings.TrimPrefix(f[0], nsPrefix)
		pid, err := strconv.Atoi(rest[:max(0, strings.IndexByte(rest, '-'))])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		_ = removeNamespace(f[0])
	}
}

// run runs a command and reports its output when it fails.
func run(argv ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
