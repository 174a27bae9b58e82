package redisstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/redisstore"
	"github.com/bandsync/bandsync/internal/redisstore/redistest"
)

// band is one session played across two instances on one Redis topology:
// the leader and a follower on A, a follower on B.
type band struct {
	t    *testing.T
	a, b *instance
	id   string
	pfx  string // key prefix
	beat *canary

	stacksMu sync.Mutex
	stacks   string // goroutines when the ticks first stopped (watchTicks)
}

const (
	bandLead = "lead"
	bandF1   = "f1" // on A, with the leader
	bandF2   = "f2" // on B
)

func startBand(t *testing.T, url string) *band {
	t.Helper()
	pfx := prefix(t)
	// Production-like presence: an instance counts as dead after three
	// missed heartbeats, which a failover of a few seconds must not cause.
	hb := func(o *redisstore.Options) {
		o.Heartbeat = 2 * time.Second
		// BANDSYNC_TEST_LOG=1 shows what each instance's backend saw.
		if os.Getenv("BANDSYNC_TEST_LOG") != "" {
			o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("inst", o.InstanceID)
		}
	}
	cfg := engine.Config{LeaderGrace: 5 * time.Second, RecoveryWindow: 30 * time.Second}
	bd := &band{t: t, id: "gig", pfx: pfx, beat: startCanary(t, engine.DefaultConfig().TickInterval),
		a: newInstance(t, open(t, url, pfx, "A", hb), cfg),
		b: newInstance(t, open(t, url, pfx, "B", hb), cfg)}
	eventually(t, 5*time.Second, "both instances connected", func() bool { return bd.a.rs.Available() && bd.b.rs.Available() })
	bd.watchTicks()
	for _, j := range []struct {
		in *instance
		m  string
	}{{bd.a, bandLead}, {bd.a, bandF1}, {bd.b, bandF2}} {
		if _, err := j.in.eng.Join(j.m, engine.JoinRequest{SessionID: bd.id, DisplayName: j.m}); err != nil {
			t.Fatalf("join %s: %v", j.m, err)
		}
	}
	if _, err := bd.a.eng.Play(bandLead, bd.id, 0); err != nil {
		t.Fatal(err)
	}
	bd.seekReachesAll(2 * time.Second)
	return bd
}

// lastSnapshot is the version of the last snapshot member got.
func lastSnapshot(in *instance, member string) uint64 {
	return in.out.lastSnapshotVersion(member)
}

var seekSeq int

// seekReachesAll has the leader seek (again, while the command is refused)
// until a seek is acknowledged and every follower, on both instances, has
// received its snapshot; it fails after within and returns how long it
// took.
func (bd *band) seekReachesAll(within time.Duration) time.Duration {
	bd.t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	var refusals []string
	for {
		seekSeq++
		st, err := bd.a.eng.Seek(bandLead, bd.id, float64(10_000*seekSeq))
		if err == nil {
			for time.Now().Before(deadline) {
				if lastSnapshot(bd.a, bandF1) >= st.Version && lastSnapshot(bd.b, bandF2) >= st.Version {
					return time.Since(start)
				}
				time.Sleep(10 * time.Millisecond)
			}
			bd.t.Fatalf("seek to version %d acknowledged on A but not delivered within %v: f1 (A) at %d, f2 (B) at %d; refused before: %v",
				st.Version, within, lastSnapshot(bd.a, bandF1), lastSnapshot(bd.b, bandF2), refusals)
		}
		refusals = append(refusals, code(err))
		if time.Now().After(deadline) {
			bd.t.Fatalf("no seek acknowledged within %v: %v", within, refusals)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// agree waits until both instances hold the same version of the session,
// the stored one, both playing at the same position, and every follower
// got that version's snapshot.
func (bd *band) agree(within time.Duration) engine.State {
	bd.t.Helper()
	var sa, sb engine.State
	eventually(bd.t, within, "both instances agree with the store", func() bool {
		sa, _ = bd.a.eng.Session(bd.id)
		sb, _ = bd.b.eng.Session(bd.id)
		rec, ok, err := bd.a.rs.Load(bd.t.Context(), bd.id)
		return err == nil && ok && sa.Version == rec.Version && sb.Version == rec.Version &&
			lastSnapshot(bd.a, bandF1) == rec.Version && lastSnapshot(bd.b, bandF2) == rec.Version
	})
	if d := sa.Position - sb.Position; d > 100 || d < -100 || !sa.IsPlaying || !sb.IsPlaying ||
		leaderOf(sa) != bandLead || leaderOf(sb) != bandLead || sa.MemberCount != 3 || sb.MemberCount != 3 {
		bd.t.Fatalf("instances disagree:\nA %+v\nB %+v", sa, sb)
	}
	return sa
}

// maxTickPause is the acceptance bound: through a failover the metronome
// never stops for longer than this.
const maxTickPause = 200 * time.Millisecond

// tickGap is the longest pause between two ticks one instance sent for
// the session since from, and when it began and ended.
func tickGap(in *instance, id string, from time.Time) (gap time.Duration, begin, end time.Time, n int) {
	var prev time.Time
	for _, t := range in.out.tickTimes(id) {
		if t.Before(from) {
			prev = t
			continue
		}
		n++
		if !prev.IsZero() && t.Sub(prev) > gap {
			gap, begin, end = t.Sub(prev), prev, t
		}
		prev = t
	}
	return gap, begin, end, n
}

// canary is a goroutine of the test process that wakes on a timer at the
// tick interval, as the engine's tick loop does, and notes when it ran. A
// pause of the canary is a pause of the whole process (the machine's
// other work, the race detector, the garbage collector); a pause of the
// ticks that the canary did not see is the engine's own.
type canary struct {
	mu   sync.Mutex
	runs []time.Time
}

func startCanary(t *testing.T, every time.Duration) *canary {
	c := &canary{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			c.mu.Lock()
			c.runs = append(c.runs, time.Now())
			c.mu.Unlock()
		}
	}()
	return c
}

// last is when the canary last ran.
func (c *canary) last() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.runs) == 0 {
		return time.Time{}
	}
	return c.runs[len(c.runs)-1]
}

// watchTicks captures the goroutines' stacks the first time an instance
// has not ticked for 150 ms while the canary is running, so that a failing
// checkTicks can say where the tick loop was stuck.
func (bd *band) watchTicks() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	bd.t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
			for _, in := range []*instance{bd.a, bd.b} {
				ts := in.out.tickTimes(bd.id)
				if len(ts) == 0 || time.Since(ts[len(ts)-1]) < 150*time.Millisecond || time.Since(bd.beat.last()) > 40*time.Millisecond {
					continue
				}
				bd.stacksMu.Lock()
				if bd.stacks == "" {
					buf := make([]byte, 1<<20)
					bd.stacks = fmt.Sprintf("instance %s had not ticked for %v:\n%s", in.rs.Instance(),
						time.Since(ts[len(ts)-1]).Round(time.Millisecond), buf[:runtime.Stack(buf, true)])
				}
				bd.stacksMu.Unlock()
			}
		}
	}()
}

// stall is the longest pause of the canary that overlaps [from, to].
func (c *canary) stall(from, to time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var gap time.Duration
	for i := 1; i < len(c.runs); i++ {
		a, b := c.runs[i-1], c.runs[i]
		if b.After(from) && a.Before(to) {
			gap = max(gap, b.Sub(a))
		}
	}
	return gap
}

// checkTicks fails when either instance stopped ticking for longer than
// maxTickPause since from (ticks are derived from the local copy and must
// never wait on Redis) and reports each instance's longest pause. A pause
// the whole test process shared (the canary stalled as long at the same
// time) is the machine's, not the engine's: the engine is charged with
// what its pause exceeds the process's.
func (bd *band) checkTicks(from time.Time) {
	bd.t.Helper()
	var detail string
	total := 0
	for _, in := range []*instance{bd.a, bd.b} {
		gap, begin, end, n := tickGap(in, bd.id, from)
		total += n
		proc := bd.beat.stall(begin, end)
		own := max(gap-proc, 0)
		detail += fmt.Sprintf(" %s: %v ending at +%v (the process: %v);", in.rs.Instance(),
			gap.Round(time.Millisecond), end.Sub(from).Round(time.Millisecond), proc.Round(time.Millisecond))
		if n == 0 || own > maxTickPause {
			bd.stacksMu.Lock()
			bd.t.Log(bd.stacks)
			bd.stacksMu.Unlock()
			bd.t.Errorf("instance %s stopped ticking for %v (the test process itself paused %v then): %d ticks since the fault",
				in.rs.Instance(), gap.Round(time.Millisecond), proc.Round(time.Millisecond), n)
		}
		ts := in.out.tickTimes(bd.id)
		if len(ts) == 0 || time.Since(ts[len(ts)-1]) > time.Second {
			bd.t.Fatalf("instance %s no longer ticks", in.rs.Instance())
		}
	}
	bd.t.Logf("ticks since the fault: %d; longest pause:%s", total, detail)
	// BANDSYNC_TEST_STACKS=FILE keeps the goroutines of the first tick
	// pause the process did not share, passing or not.
	if f := os.Getenv("BANDSYNC_TEST_STACKS"); f != "" {
		bd.stacksMu.Lock()
		_ = os.WriteFile(f, []byte(bd.stacks), 0o644)
		bd.stacksMu.Unlock()
	}
}

// seeker is the leader seeking every 150 ms while a fault lasts: each seek
// is either acknowledged or refused with an engine error a client can
// show.
type seeker struct {
	stop chan struct{}
	done chan struct{}

	acked    int
	refused  []string
	lastPos  float64   // position of the last acknowledged seek
	lastAt   time.Time // when it was acknowledged
	lastVer  uint64
	badError error
}

func (bd *band) seekDuringFault() *seeker {
	sk := &seeker{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(sk.done)
		t := time.NewTicker(150 * time.Millisecond)
		defer t.Stop()
		for i := 1; ; i++ {
			select {
			case <-sk.stop:
				return
			case <-t.C:
			}
			pos := float64(1_000_000 + 10_000*i)
			st, err := bd.a.eng.Seek(bandLead, bd.id, pos)
			switch {
			case err == nil:
				sk.acked++
				sk.lastPos, sk.lastAt, sk.lastVer = pos, time.Now(), st.Version
			case code(err) == protocol.CodeInternal, code(err) == protocol.CodeStoreUnavailable:
				sk.refused = append(sk.refused, err.Error())
			default:
				sk.badError = err
			}
		}
	}()
	return sk
}

// end stops the seeker and checks that every refusal was a clear one.
func (sk *seeker) end(t *testing.T) {
	t.Helper()
	close(sk.stop)
	<-sk.done
	t.Logf("seeks during the fault: %d acknowledged, %d refused %q", sk.acked, len(sk.refused), sk.refused)
	if sk.badError != nil {
		t.Fatalf("a seek during the fault failed with an unexpected error: %v", sk.badError)
	}
}

// kept checks that the last seek acknowledged during the fault is the
// position the instances agree on (moved on by the time played since).
func (sk *seeker) kept(t *testing.T, st engine.State) {
	t.Helper()
	if sk.acked == 0 {
		return
	}
	// The position is compared at the instant the state was read (its
	// serverTimestamp), not at the instant of this check: on a loaded
	// machine the two were seconds apart, which read as a seek "lost"
	// with a position seconds behind.
	want := sk.lastPos + (st.ServerTimestamp - float64(sk.lastAt.UnixMilli()))
	if st.Version < sk.lastVer || st.Position < want-1000 || st.Position > want+1000 {
		// The anchor times say whether the agreed state is another
		// evaluation of the same command or another state altogether.
		t.Fatalf("the last seek acknowledged during the fault (to %.0f ms, version %d, acknowledged at epoch %d ms) was lost: "+
			"agreed state is version %d at %.0f ms (serverTimestamp %.0f), want about %.0f\nagreed state: %+v",
			sk.lastPos, sk.lastVer, sk.lastAt.UnixMilli(), st.Version, st.Position, st.ServerTimestamp, want, st)
	}
}

// availability watches whether each instance considers Redis available
// (what /health reports as ok or degraded) while a fault lasts.
type availability struct {
	stop  chan struct{}
	done  chan struct{}
	downs [2]int // times A, B went from available to unavailable
}

func (bd *band) watchAvailability() *availability {
	av := &availability{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(av.done)
		was := [2]bool{true, true}
		for {
			for i, in := range []*instance{bd.a, bd.b} {
				up := in.rs.Available()
				if was[i] && !up {
					av.downs[i]++
				}
				was[i] = up
			}
			select {
			case <-av.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return av
}

// end stops watching and fails when an instance went down more than once:
// a health that flaps between ok and degraded during one failover (and
// resyncs every session at each return) instead of staying degraded until
// Redis can serve again.
func (av *availability) end(t *testing.T) {
	t.Helper()
	close(av.stop)
	<-av.done
	t.Logf("Redis became unavailable %d times on A, %d on B", av.downs[0], av.downs[1])
	if av.downs[0] > 1 || av.downs[1] > 1 {
		t.Fatalf("availability flapped during one failover: down %d times on A, %d on B", av.downs[0], av.downs[1])
	}
}

// lostTempo is a change the session's master acknowledged and its replica
// never got (replication was cut), so a failover loses it from Redis.
type lostTempo struct {
	replica string
	version uint64
	tempo   float64
}

// loseTempo cuts the replication of the master serving the session, then
// has the leader change the tempo and waits until the followers on both
// instances have it, and checks that the replica has not.
func (bd *band) loseTempo(cut func(master string) (string, error), master string, tempo float64) lostTempo {
	bd.t.Helper()
	replica, err := cut(master)
	if err != nil {
		bd.t.Fatal(err)
	}
	st, err := bd.a.eng.SetTempo(bandLead, bd.id, tempo)
	if err != nil {
		bd.t.Fatal(err)
	}
	eventually(bd.t, 5*time.Second, "the followers on both instances have the tempo", func() bool {
		return lastSnapshot(bd.a, bandF1) >= st.Version && lastSnapshot(bd.b, bandF2) >= st.Version
	})
	raw, err := redistest.HGet(replica, bd.pfx+"{"+bd.id+"}:state", "v")
	if err != nil {
		bd.t.Fatal(err)
	}
	if v, _ := strconv.ParseUint(raw, 10, 64); v >= st.Version {
		bd.t.Fatalf("the replica %s has version %d: the cut did not keep the tempo change (version %d) from it", replica, v, st.Version)
	}
	return lostTempo{replica: replica, version: st.Version, tempo: tempo}
}

// kept checks that the tempo change Redis lost is in the state both
// instances agree on, and in the store.
func (lt lostTempo) kept(bd *band, st engine.State) {
	bd.t.Helper()
	sb, _ := bd.b.eng.Session(bd.id)
	rec := stored(bd.t, bd.a.rs, bd.id)
	if st.TempoBpm != lt.tempo || sb.TempoBpm != lt.tempo || rec.Tempo != lt.tempo {
		bd.t.Fatalf("the acknowledged change to tempo %v (version %d) that the failover lost from Redis was not restored: tempo on A %v, on B %v, stored %v",
			lt.tempo, lt.version, st.TempoBpm, sb.TempoBpm, rec.Tempo)
	}
}

// nextSeekWithin has the leader seek once the instances agreed after a
// failover that was over at overAt, and checks that the seek reached the
// members on every instance within 5 s of overAt.
func (bd *band) nextSeekWithin(overAt time.Time) time.Duration {
	bd.t.Helper()
	bd.seekReachesAll(time.Until(overAt.Add(5 * time.Second)))
	return time.Since(overAt)
}

// noDisconnects checks that no member's socket was closed.
func (bd *band) noDisconnects() {
	bd.t.Helper()
	if n, m := bd.a.out.disconnects(), bd.b.out.disconnects(); n+m > 0 {
		bd.t.Fatalf("sockets were disconnected: %d on A, %d on B", n, m)
	}
}

// During play, the Cluster master owning the session's slot is SIGKILLed.
// Once its replica has taken over, the leader's next seek reaches the
// followers on both instances within 5 s, ticks went on throughout, and
// both instances agree with the store. Then the old master comes back (as
// a replica) and the band still plays as one.
func TestClusterMasterFailoverDuringPlay(t *testing.T) {
	c := redistest.StartCluster(t)
	bd := startBand(t, c.URL())
	old, err := c.MasterOf("{" + bd.id + "}")
	if err != nil {
		t.Fatal(err)
	}
	lost := bd.loseTempo(c.CutReplication, old, 140)
	sk := bd.seekDuringFault()
	av := bd.watchAvailability()
	killed := time.Now()
	if err := c.Kill(old); err != nil {
		t.Fatal(err)
	}
	now, err := c.WaitFailover("{"+bd.id+"}", old, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	over := time.Now()
	if err := c.HealReplication(lost.replica); err != nil {
		t.Fatal(err)
	}
	sk.end(t)
	agreed := bd.agree(5 * time.Second)
	sk.kept(t, agreed)
	lost.kept(bd, agreed)
	t.Logf("instances agreed %v after the fault was over", time.Since(over).Round(time.Millisecond))
	av.end(t)
	took := bd.nextSeekWithin(over)
	t.Logf("master %s killed; replica %s took over after %v; the next seek reached every member %v after that",
		old, now, over.Sub(killed).Round(time.Millisecond), took.Round(time.Millisecond))
	bd.agree(5 * time.Second)
	bd.checkTicks(killed)
	bd.noDisconnects()

	if err := c.Restart(old); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	bd.seekReachesAll(5 * time.Second)
	bd.agree(5 * time.Second)
	bd.checkTicks(killed)
}

// The Sentinel master is SIGKILLed during play; after the sentinels
// promote the replica, the leader's next seek reaches every member within
// 5 s, ticks went on, and the instances agree.
func TestSentinelMasterFailoverDuringPlay(t *testing.T) {
	s := redistest.StartSentinel(t)
	bd := startBand(t, s.URL())
	old, err := s.Master()
	if err != nil {
		t.Fatal(err)
	}
	lost := bd.loseTempo(s.CutReplication, old, 140)
	sk := bd.seekDuringFault()
	av := bd.watchAvailability()
	killed := time.Now()
	if err := s.Kill(old); err != nil {
		t.Fatal(err)
	}
	now, err := s.WaitFailover(old, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	over := time.Now()
	if err := s.HealReplication(lost.replica); err != nil {
		t.Fatal(err)
	}
	sk.end(t)
	agreed := bd.agree(5 * time.Second)
	sk.kept(t, agreed)
	lost.kept(bd, agreed)
	t.Logf("instances agreed %v after the fault was over", time.Since(over).Round(time.Millisecond))
	av.end(t)
	took := bd.nextSeekWithin(over)
	t.Logf("master %s killed; sentinels promoted %s after %v; the next seek reached every member %v after that",
		old, now, over.Sub(killed).Round(time.Millisecond), took.Round(time.Millisecond))
	bd.agree(5 * time.Second)
	bd.checkTicks(killed)
	bd.noDisconnects()
}

// The session's slot moves to another master during play (as
// redis-cli --cluster reshard does): the instances follow it there.
func TestClusterSlotMoveDuringPlay(t *testing.T) {
	c := redistest.StartCluster(t)
	bd := startBand(t, c.URL())
	from, err := c.MasterOf("{" + bd.id + "}")
	if err != nil {
		t.Fatal(err)
	}
	sk := bd.seekDuringFault()
	moved := time.Now()
	to, err := c.MoveSlot("{" + bd.id + "}")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // a few seeks after the move too
	sk.end(t)
	settled := time.Now()
	sk.kept(t, bd.agree(5*time.Second))
	t.Logf("instances agreed %v after the fault was over", time.Since(settled).Round(time.Millisecond))
	took := bd.seekReachesAll(5 * time.Second)
	t.Logf("slot moved from %s to %s; the next seek reached every member %v later", from, to, took.Round(time.Millisecond))
	bd.agree(5 * time.Second)
	bd.checkTicks(moved)
}
