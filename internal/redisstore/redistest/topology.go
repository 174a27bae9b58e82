package redistest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A node is one redis-server process of a topology, killed and restarted on
// the same port with its own config file (a Cluster node keeps its node id
// and its role in nodes.conf, so a restarted master rejoins as a replica).
type node struct {
	Port int
	args []string // after the config file (or nothing)
	conf string   // config file, "" for none
	log  string

	mu  sync.Mutex
	cmd *exec.Cmd
}

func (n *node) addr() string { return "127.0.0.1:" + strconv.Itoa(n.Port) }

func (n *node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return nil
	}
	var args []string
	if n.conf != "" {
		args = append(args, n.conf)
	}
	args = append(args, n.args...)
	cmd := exec.Command("redis-server", args...)
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	n.cmd = cmd
	return nil
}

// kill sends SIGKILL, as a crashed or fenced machine would: no goodbye to
// clients or peers.
func (n *node) kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	_ = n.cmd.Wait()
	n.cmd = nil
}

func (n *node) alive() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// freeBusPorts returns count ports below 55,536 that are free together with
// port+10,000 (a Cluster node's bus port). The ports are only probed, so a
// race with another process is possible; callers retry.
func freeBusPorts(count int) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for tries := 0; len(out) < count && tries < 1000; tries++ {
		p := 20000 + rand.IntN(35000)
		if seen[p] || seen[p+10000] || seen[p-10000] || p == 6379 || p+10000 == 6379 {
			continue
		}
		if !portFree(p) || !portFree(p+10000) {
			continue
		}
		seen[p] = true
		out = append(out, p)
	}
	if len(out) < count {
		return nil, errors.New("redistest: no free ports")
	}
	return out, nil
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// waitFor polls cond every 50 ms until it is true or d passes.
func waitFor(d time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: not within %v: %s (last error: %v)", d, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func quick(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 300 * time.Millisecond,
		ReadTimeout: time.Second, MaxRetries: -1, DialerRetries: 1})
}

func ctx1() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Second)
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---- Cluster ----------------------------------------------------------------

// ClusterNodeTimeout is the cluster-node-timeout the test clusters run
// with: a master is failed over about two timeouts after it dies.
const ClusterNodeTimeout = time.Second

// Cluster is a private Redis Cluster of 3 masters and 3 replicas on free
// ports of 127.0.0.1 (each with its bus port at port+10,000).
type Cluster struct {
	nodes []*node
	dir   string
}

// StartCluster starts a 3+3 cluster, waits until every node reports
// cluster_state:ok and every replica is in sync, and tears it down when the
// test ends. Without redis-server/redis-cli the test is skipped (failed
// under CI).
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	c, err := startCluster(tb.TempDir())
	if err != nil {
		Unavailable(tb, err)
	}
	tb.Cleanup(c.Stop)
	return c
}

func startCluster(dir string) (*Cluster, error) {
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, err
		}
	}
	return retry(func() (*Cluster, error) { return tryCluster(dir) })
}

// retry makes up to three attempts at starting a topology: a free port
// picked for it can be taken by another process before its server binds.
func retry[T any](start func() (T, error)) (T, error) {
	var err error
	for range 3 {
		var v T
		if v, err = start(); err == nil {
			return v, nil
		}
	}
	var zero T
	return zero, err
}

func tryCluster(dir string) (*Cluster, error) {
	ports, err := freeBusPorts(6)
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	for _, p := range ports {
		ps := strconv.Itoa(p)
		n := &node{Port: p, log: filepath.Join(dir, "node-"+ps+".log")}
		n.args = []string{"--bind", "127.0.0.1", "--port", ps, "--save", "", "--appendonly", "no",
			"--dir", dir, "--logfile", n.log,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes-" + ps + ".conf",
			"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout.Milliseconds())),
			// A replica takes over however long it was disconnected: the
			// tests kill masters on purpose.
			"--cluster-replica-validity-factor", "0",
			// Sessions on the healthy shards keep working while one
			// shard fails over.
			"--cluster-require-full-coverage", "no",
			"--cluster-allow-pubsubshard-when-down", "yes"}
		c.nodes = append(c.nodes, n)
		if err := n.start(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	for _, n := range c.nodes {
		if err := waitFor(5*time.Second, n.addr()+" answers PING", func() (bool, error) {
			cl := quick(n.addr())
			defer cl.Close()
			ctx, cancel := ctx1()
			defer cancel()
			err := cl.Ping(ctx).Err()
			return err == nil, err
		}); err != nil {
			c.Stop()
			return nil, fmt.Errorf("%v (log: %s)", err, tail(n.log, 5))
		}
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.nodes {
		args = append(args, n.addr())
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
	}
	if err := c.WaitHealthy(20 * time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// URL is the REDIS_URL for the cluster: every node is a seed.
func (c *Cluster) URL() string {
	var b strings.Builder
	b.WriteString("redis://" + c.nodes[0].addr())
	for i, n := range c.nodes[1:] {
		if i == 0 {
			b.WriteString("?")
		} else {
			b.WriteString("&")
		}
		b.WriteString("addr=" + n.addr())
	}
	return b.String()
}

func (c *Cluster) byAddr(addr string) *node {
	for _, n := range c.nodes {
		if n.addr() == addr {
			return n
		}
	}
	return nil
}

// WaitHealthy waits until every running node reports cluster_state:ok,
// the three masters cover every slot, and each master's replica is
// connected and in sync (so that a master can be failed over).
func (c *Cluster) WaitHealthy(d time.Duration) error {
	var why string
	err := waitFor(d, "cluster_state:ok on every node with every replica in sync", func() (bool, error) {
		masters := 0
		for _, n := range c.nodes {
			if !n.alive() {
				continue
			}
			cl := quick(n.addr())
			ctx, cancel := ctx1()
			info, err := cl.ClusterInfo(ctx).Result()
			var repl string
			if err == nil {
				repl, err = cl.Info(ctx, "replication").Result()
			}
			cancel()
			cl.Close()
			if err != nil {
				return false, err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				why = n.addr() + ": cluster state not ok"
				return false, nil
			}
			switch {
			case strings.Contains(repl, "role:master"):
				if !strings.Contains(repl, "connected_slaves:1") {
					why = n.addr() + ": a master without its replica"
					return false, nil
				}
				masters++
			case strings.Contains(repl, "master_link_status:up") && !strings.Contains(repl, "master_sync_in_progress:1"):
			default:
				why = n.addr() + ": a replica not in sync; its log ends:\n" + tail(n.log, 8)
				return false, nil
			}
		}
		why = fmt.Sprintf("%d masters with a replica", masters)
		return masters == 3, nil
	})
	if err != nil {
		for _, n := range c.nodes {
			if n.alive() {
				why += "\n--- " + n.addr() + ":\n" + tail(n.log, 6)
			}
		}
		return fmt.Errorf("%w; %s", err, why)
	}
	return nil
}

// MasterOf returns the address of the master serving key's slot, as the
// cluster itself reports it (asked of any running node).
func (c *Cluster) MasterOf(key string) (string, error) {
	var lastErr error
	for _, n := range c.nodes {
		if !n.alive() {
			continue
		}
		cl := quick(n.addr())
		ctx, cancel := ctx1()
		slot, err := cl.ClusterKeySlot(ctx, key).Result()
		var shards []redis.ClusterShard
		if err == nil {
			shards, err = cl.ClusterShards(ctx).Result()
		}
		cancel()
		cl.Close()
		if err != nil {
			lastErr = err
			continue
		}
		if m, ok := slotMaster(shards, slot); ok {
			return nodeAddr(m), nil
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no node serves the slot")
	}
	return "", fmt.Errorf("redistest: master of %q: %w", key, lastErr)
}

// slotMaster finds the online master serving slot in a CLUSTER SHARDS
// reply.
func slotMaster(shards []redis.ClusterShard, slot int64) (redis.Node, bool) {
	for _, sh := range shards {
		for _, r := range sh.Slots {
			if r.Start <= slot && slot <= r.End {
				for _, n := range sh.Nodes {
					if n.Role == "master" && n.Health == "online" {
						return n, true
					}
				}
			}
		}
	}
	return redis.Node{}, false
}

func nodeAddr(n redis.Node) string { return net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10)) }

// Kill SIGKILLs the node at addr.
func (c *Cluster) Kill(addr string) error {
	n := c.byAddr(addr)
	if n == nil {
		return fmt.Errorf("redistest: no node %s", addr)
	}
	n.kill()
	return nil
}

// Restart starts a killed node again on its port; it rejoins with the
// identity in its nodes.conf (a replaced master comes back as a replica).
func (c *Cluster) Restart(addr string) error {
	n := c.byAddr(addr)
	if n == nil {
		return fmt.Errorf("redistest: no node %s", addr)
	}
	return n.start()
}

// WaitFailover waits until key's slot is served by a master other than
// old, as every running node sees it, and returns the new master.
func (c *Cluster) WaitFailover(key, old string, d time.Duration) (string, error) {
	var now string
	err := waitFor(d, "a replica took over "+old, func() (bool, error) {
		m, err := c.MasterOf(key)
		if err != nil || m == old {
			return false, err
		}
		cl := quick(m)
		defer cl.Close()
		ctx, cancel := ctx1()
		defer cancel()
		info, err := cl.ClusterInfo(ctx).Result()
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			return false, err
		}
		now = m
		return true, nil
	})
	return now, err
}

// MoveSlot migrates key's slot, with its keys, from its master to another
// master (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE on
// every master), as redis-cli --cluster reshard does, and returns the new
// owner.
func (c *Cluster) MoveSlot(key string) (string, error) {
	src, err := c.MasterOf(key)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc := quick(src)
	defer sc.Close()
	slot, err := sc.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return "", err
	}
	// Masters, from the source's view.
	shards, err := sc.ClusterShards(ctx).Result()
	if err != nil {
		return "", err
	}
	srcNode, ok := slotMaster(shards, slot)
	if !ok || nodeAddr(srcNode) != src {
		return "", fmt.Errorf("redistest: %s does not serve slot %d", src, slot)
	}
	srcID := srcNode.ID
	var dst, dstID string
	var masters []string
	for _, sh := range shards {
		for _, n := range sh.Nodes {
			if n.Role != "master" || n.Health != "online" || len(sh.Slots) == 0 {
				continue
			}
			a := nodeAddr(n)
			masters = append(masters, a)
			if dst == "" && a != src {
				dst, dstID = a, n.ID
			}
		}
	}
	if dst == "" {
		return "", errors.New("redistest: no other master to move the slot to")
	}
	dc := quick(dst)
	defer dc.Close()
	if err := dc.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID).Err(); err != nil {
		return "", fmt.Errorf("SETSLOT IMPORTING: %w", err)
	}
	if err := sc.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID).Err(); err != nil {
		return "", fmt.Errorf("SETSLOT MIGRATING: %w", err)
	}
	host, port, _ := net.SplitHostPort(dst)
	for {
		keys, err := sc.ClusterGetKeysInSlot(ctx, int(slot), 100).Result()
		if err != nil {
			return "", err
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "REPLACE", "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		if err := sc.Do(ctx, args...).Err(); err != nil {
			return "", fmt.Errorf("MIGRATE: %w", err)
		}
	}
	// The destination first, then the source, then the others: the order
	// redis-cli uses, so no node ever answers with a loop of redirections.
	order := []string{dst, src}
	for _, m := range masters {
		if m != dst && m != src && !slices.Contains(order, m) {
			order = append(order, m)
		}
	}
	for _, m := range order {
		cl := quick(m)
		err := cl.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err()
		cl.Close()
		if err != nil {
			return "", fmt.Errorf("SETSLOT NODE on %s: %w", m, err)
		}
	}
	return dst, nil
}

// Stop kills every node.
func (c *Cluster) Stop() {
	for _, n := range c.nodes {
		n.kill()
	}
}

// ---- Sentinel ---------------------------------------------------------------

// SentinelMaster is the master name the test Sentinel setups monitor.
const SentinelMaster = "mymaster"

// SentinelDownAfter is the sentinels' down-after-milliseconds: a master is
// failed over a little after it has been silent this long.
const SentinelDownAfter = time.Second

// Sentinel is a private Sentinel setup: one master, one replica and three
// sentinels (quorum 2) on free ports of 127.0.0.1.
type Sentinel struct {
	data      []*node // [0] is the first master, [1] its replica
	sentinels []*node
	dir       string
}

// StartSentinel starts the setup, waits until every sentinel knows the
// master, its replica and the other two sentinels (so that a failover can
// be agreed), and tears it down when the test ends.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	s, err := startSentinel(tb.TempDir())
	if err != nil {
		Unavailable(tb, err)
	}
	tb.Cleanup(s.Stop)
	return s
}

func startSentinel(dir string) (*Sentinel, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, err
	}
	return retry(func() (*Sentinel, error) { return trySentinel(dir) })
}

func trySentinel(dir string) (*Sentinel, error) {
	ports, err := freeBusPorts(5)
	if err != nil {
		return nil, err
	}
	s := &Sentinel{dir: dir}
	master := strconv.Itoa(ports[0])
	for i, p := range ports[:2] {
		ps := strconv.Itoa(p)
		n := &node{Port: p, log: filepath.Join(dir, "data-"+ps+".log")}
		n.args = []string{"--bind", "127.0.0.1", "--port", ps, "--save", "", "--appendonly", "no",
			"--dir", dir, "--logfile", n.log}
		if i == 1 {
			n.args = append(n.args, "--replicaof", "127.0.0.1", master)
		}
		s.data = append(s.data, n)
	}
	for _, p := range ports[2:] {
		ps := strconv.Itoa(p)
		n := &node{Port: p, log: filepath.Join(dir, "sentinel-"+ps+".log"),
			conf: filepath.Join(dir, "sentinel-"+ps+".conf")}
		// Sentinel rewrites its config file (what it learned), so each
		// has its own, writable.
		conf := fmt.Sprintf("bind 127.0.0.1\nport %s\ndir %s\nlogfile %s\n"+
			"sentinel monitor %s 127.0.0.1 %s 2\n"+
			"sentinel down-after-milliseconds %s %d\n"+
			// A master is not failed over again within twice
			// this: short, so that tests can fail over round after
			// round.
			"sentinel failover-timeout %s 3000\n"+
			"sentinel parallel-syncs %s 1\n",
			ps, dir, n.log, SentinelMaster, master, SentinelMaster, SentinelDownAfter.Milliseconds(),
			SentinelMaster, SentinelMaster)
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			return nil, err
		}
		n.args = []string{"--sentinel"}
		s.sentinels = append(s.sentinels, n)
	}
	for _, n := range append(append([]*node{}, s.data...), s.sentinels...) {
		if err := n.start(); err != nil {
			s.Stop()
			return nil, err
		}
	}
	if err := s.WaitHealthy(30 * time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// WaitHealthy waits until every running sentinel names the same running
// master, knows one in-sync replica of it and the other two sentinels.
func (s *Sentinel) WaitHealthy(d time.Duration) error {
	return waitFor(d, "every sentinel knows the master, its replica and the other sentinels", func() (bool, error) {
		var master string
		for _, n := range s.sentinels {
			if !n.alive() {
				continue
			}
			sc := redis.NewSentinelClient(&redis.Options{Addr: n.addr(), DialTimeout: 300 * time.Millisecond, MaxRetries: -1})
			ctx, cancel := ctx1()
			addr, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
			var replicas, peers []map[string]string
			if err == nil {
				replicas, err = sc.Replicas(ctx, SentinelMaster).Result()
			}
			if err == nil {
				peers, err = sc.Sentinels(ctx, SentinelMaster).Result()
			}
			cancel()
			sc.Close()
			if err != nil {
				return false, err
			}
			m := net.JoinHostPort(addr[0], addr[1])
			if master == "" {
				master = m
			}
			if m != master || len(peers) < len(s.sentinels)-1 {
				return false, nil
			}
			ok := false
			for _, r := range replicas {
				if !strings.Contains(r["flags"], "down") && r["master-link-status"] == "ok" {
					ok = true
				}
			}
			if !ok {
				return false, nil
			}
		}
		if n := s.byAddr(master); n == nil || !n.alive() {
			return false, nil
		}
		return true, nil
	})
}

// URL is the REDIS_URL for the setup: every sentinel, and the master name.
func (s *Sentinel) URL() string {
	var hosts []string
	for _, n := range s.sentinels {
		hosts = append(hosts, n.addr())
	}
	return "redis-sentinel://" + strings.Join(hosts, ",") + "/" + SentinelMaster
}

func (s *Sentinel) byAddr(addr string) *node {
	for _, n := range s.data {
		if n.addr() == addr {
			return n
		}
	}
	return nil
}

// Master asks the sentinels which data node is the master now.
func (s *Sentinel) Master() (string, error) {
	var lastErr error
	for _, n := range s.sentinels {
		if !n.alive() {
			continue
		}
		sc := redis.NewSentinelClient(&redis.Options{Addr: n.addr(), DialTimeout: 300 * time.Millisecond, MaxRetries: -1})
		ctx, cancel := ctx1()
		addr, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
		cancel()
		sc.Close()
		if err == nil {
			return net.JoinHostPort(addr[0], addr[1]), nil
		}
		lastErr = err
	}
	return "", fmt.Errorf("redistest: no sentinel names the master: %v", lastErr)
}

// Kill SIGKILLs the data node at addr.
func (s *Sentinel) Kill(addr string) error {
	n := s.byAddr(addr)
	if n == nil {
		return fmt.Errorf("redistest: no data node %s", addr)
	}
	n.kill()
	return nil
}

// Restart starts a killed data node again (Sentinel reconfigures it as a
// replica of the new master).
func (s *Sentinel) Restart(addr string) error {
	n := s.byAddr(addr)
	if n == nil {
		return fmt.Errorf("redistest: no data node %s", addr)
	}
	return n.start()
}

// WaitFailover waits until the sentinels name a master other than old and
// that master answers as one, and returns it.
func (s *Sentinel) WaitFailover(old string, d time.Duration) (string, error) {
	var now string
	err := waitFor(d, "sentinels promoted a replica of "+old, func() (bool, error) {
		m, err := s.Master()
		if err != nil || m == old {
			return false, err
		}
		cl := quick(m)
		defer cl.Close()
		ctx, cancel := ctx1()
		defer cancel()
		info, err := cl.Info(ctx, "replication").Result()
		if err != nil || !strings.Contains(info, "role:master") {
			return false, err
		}
		now = m
		return true, nil
	})
	return now, err
}

// Stop kills every process of the setup.
func (s *Sentinel) Stop() {
	for _, n := range s.sentinels {
		n.kill()
	}
	for _, n := range s.data {
		n.kill()
	}
}

// ---- Lost writes ------------------------------------------------------------

// cutMasterAuth is the wrong password a cut replica offers its master; the
// masters of these topologies have none, so the handshake fails.
const cutMasterAuth = "redistest-replication-cut"

// cutReplication stops master's replica from receiving the master's
// writes, as a replication link that lags or breaks just before the master
// dies: the replica closes its link (CLIENT KILL TYPE master) and cannot
// open it again, because it now authenticates with a password the master
// does not have. The master goes on acknowledging writes, which the
// replica never gets: when the master dies and the replica is promoted,
// they are lost, as Redis's asynchronous replication loses them. It
// returns the replica's address.
func cutReplication(master string) (string, error) {
	mc := quick(master)
	defer mc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := mc.Info(ctx, "replication").Result()
	if err != nil {
		return "", err
	}
	replica := ""
	for _, line := range strings.Split(info, "\n") {
		if !strings.HasPrefix(line, "slave0:") {
			continue
		}
		var ip, port string
		for _, kv := range strings.Split(strings.TrimSpace(strings.TrimPrefix(line, "slave0:")), ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "ip":
				ip = v
			case "port":
				port = v
			}
		}
		replica = net.JoinHostPort(ip, port)
	}
	if replica == "" {
		return "", fmt.Errorf("redistest: %s has no replica", master)
	}
	rc := quick(replica)
	defer rc.Close()
	if err := rc.ConfigSet(ctx, "masterauth", cutMasterAuth).Err(); err != nil {
		return "", err
	}
	if err := rc.ClientKillByFilter(ctx, "TYPE", "master").Err(); err != nil {
		return "", err
	}
	err = waitFor(3*time.Second, "the replication link of "+replica+" is down", func() (bool, error) {
		ri, err := rc.Info(ctx, "replication").Result()
		if err != nil {
			return false, err
		}
		mi, err := mc.Info(ctx, "replication").Result()
		if err != nil {
			return false, err
		}
		return strings.Contains(ri, "master_link_status:down") && strings.Contains(mi, "connected_slaves:0"), nil
	})
	return replica, err
}

// healReplication undoes cutReplication on replica (whatever its role now).
func healReplication(replica string) error {
	rc := quick(replica)
	defer rc.Close()
	ctx, cancel := ctx1()
	defer cancel()
	return rc.ConfigSet(ctx, "masterauth", "").Err()
}

// CutReplication stops the replica of master from receiving its writes
// until HealReplication (see cutReplication) and returns the replica.
func (c *Cluster) CutReplication(master string) (string, error) { return cutReplication(master) }

// HealReplication lets replica authenticate to its master again.
func (c *Cluster) HealReplication(replica string) error { return healReplication(replica) }

// CutReplication stops the replica of master from receiving its writes
// until HealReplication (see cutReplication) and returns the replica.
func (s *Sentinel) CutReplication(master string) (string, error) { return cutReplication(master) }

// HealReplication lets replica authenticate to its master again.
func (s *Sentinel) HealReplication(replica string) error { return healReplication(replica) }

// HGet reads a hash field on the node at addr itself, a replica included
// (READONLY first, for a Cluster replica); "" when the field is absent.
func HGet(addr, key, field string) (string, error) {
	cl := quick(addr)
	defer cl.Close()
	ctx, cancel := ctx1()
	defer cancel()
	conn := cl.Conn()
	defer conn.Close()
	_ = conn.ReadOnly(ctx).Err() // refused outside a Cluster, where reads on a replica need nothing
	v, err := conn.HGet(ctx, key, field).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return v, err
}
