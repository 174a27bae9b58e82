//go:build linux && (netfault || chaos)

package netfault

import (
	"context"
	"math"
	"strconv"
	"sync"
	"testing"
	"time"
)

// twoLeaders collects the samples in which more than one party leads.
// A handover reaches the instances and devices a few milliseconds apart
// (pub/sub), so one sample may catch the old leader on one side and the
// new one on the other: such a lone sample is counted as transient. Two
// leaders in two samples in a row (100 ms apart) is a split.
type twoLeaders struct {
	mu              sync.Mutex
	n, bad, all     int
	prev            string // the previous sample, when it had two leaders
	first           string
	skipDev         string
	since           time.Time // the fault's start, for the report
	firstAt, lastAt time.Time
}

func (c *twoLeaders) add(s sample) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	if ls := s.leaders(c.skipDev); len(ls) <= 1 {
		c.prev = ""
		return
	}
	c.all++
	if c.prev == "" {
		c.prev = s.String()
		return
	}
	if c.bad == 0 {
		c.first = c.prev
		c.firstAt = s.at
	}
	c.bad++
	c.lastAt = s.at
}

func (c *twoLeaders) report(t *testing.T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t.Logf("two-leader samples: %d of %d (%d in a row after another)", c.all, c.n, c.bad)
	if c.bad > 0 && !c.since.IsZero() {
		t.Logf("two leaders from %s to %s after the fault began", c.firstAt.Sub(c.since).Round(time.Millisecond), c.lastAt.Sub(c.since).Round(time.Millisecond))
	}
	if c.bad > 0 {
		t.Errorf("%d of %d samples had two leaders right after a sample that had them too; the first: %s", c.bad, c.n, c.first)
	}
}

func disconnects(t *testing.T, b *band, except ...string) int {
	n := 0
	for _, name := range b.names() {
		d := b.state(name)
		t.Logf("device %s: %d disconnects", name, d.Disconnects)
		skip := false
		for _, e := range except {
			skip = skip || e == name
		}
		if !skip {
			n += d.Disconnects
		}
	}
	return n
}

// One instance loses Redis (every packet between its host and Redis's
// dropped, both ways) for 3 s (10 s in make chaos) while its leader keeps
// seeking and a member on the other instance keeps asking for the lead.
// The seeks the cut off instance cannot pass on are refused
// (STORE_UNAVAILABLE), not acknowledged. At no sample do two parties
// lead; when the partition heals, every instance and every device agrees
// within 15 s, on the leader's last acknowledged seek, with the leader
// that kept its instance or (after 10 s, longer than the others wait for
// a dead instance's leader) its successor on the other instance; nobody
// was disconnected; and the leader's next seek reaches every device.
func TestPartitionFromRedis(t *testing.T) {
	partition := 3 * time.Second
	if long {
		partition = 10 * time.Second
	}
	l := New(t)
	rh, ha, hb := l.Host("redis"), l.Host("ia"), l.Host("ib")
	hosts := map[string]*Host{"lead": l.Host("lead"), "fa": l.Host("fa"), "fb": l.Host("fb")}
	raddr := startRedis(t, l, rh)
	a, b := startInstance(t, l, ha, raddr), startInstance(t, l, hb, raddr)
	ins := []*instance{a, b}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bd := newBand(t, deviceConfig(t, testLog(t)), hosts)
	bd.join(ctx, devSpec{"lead", a.url, "leader"}, devSpec{"fa", a.url, "follower"}, devSpec{"fb", b.url, "follower"})
	bd.play("lead")
	if s, ok := bd.converge(ctx, ins, 10*time.Second); !ok {
		t.Fatalf("no agreement before the fault: %s", s)
	}
	leaderID := bd.state("lead").ID

	var tl twoLeaders
	stopSampling := bd.sampler(ctx, ins, 100*time.Millisecond, tl.add)

	// The leader seeks every 500 ms, the member on B claims every second.
	var wg sync.WaitGroup
	actx, stopActing := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 1; actx.Err() == nil; k++ {
			bd.send("lead", "seek "+strconv.Itoa(k*10_000))
			if k%2 == 0 {
				bd.send("fb", "claim")
			}
			sleep(actx, 500*time.Millisecond)
		}
	}()

	sleep(ctx, time.Second)
	tl.mu.Lock()
	tl.since = time.Now() // the first DROP rule is in place a moment later
	tl.mu.Unlock()
	heal := ha.Partition(rh)
	t.Logf("instance ia partitioned from redis for %s", partition)
	sleep(ctx, partition)
	stopActing()
	wg.Wait()
	if err := heal(); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	// The last seek may still be on its way; its ack is what must survive.
	sleep(ctx, 300*time.Millisecond)
	final, ok := bd.converge(ctx, ins, 15*time.Second)
	took := final.at.Sub(healed)
	stopSampling()
	tl.report(t)
	if !ok {
		t.Fatalf("no agreement 15 s after healing: %s", final)
	}
	t.Logf("agreement %s after healing: %s", took.Round(time.Millisecond), final)

	lead := bd.state("lead")
	// Past instance TTL + LEADER_GRACE_MS (4-6 s + 5 s with the default
	// heartbeat; only make chaos's 10 s partition lasts that long) the
	// others may have handed the lead to the member on their side, by
	// the rule for a leader whose connection dropped: the cut off
	// instance stopped naming a leader before that (no two leaders),
	// and adopts it on healing.
	passed := long && final.instances["ia"].Leader == bd.state("fb").ID
	if final.instances["ia"].Leader != leaderID && !passed {
		t.Errorf("after healing the leader is %q, not the leader that kept its instance (%q) nor, after a partition this long, its successor on ib", final.instances["ia"].Leader, leaderID)
	}
	t.Logf("after healing: the lead passed to the member on ib: %v", passed)
	t.Logf("the leader's seeks: %d acknowledged, %d refused with STORE_UNAVAILABLE; its refusals: %q", len(lead.Seeks), lead.Unavailable, lead.Errors)
	// In 3 s the seeks may all wait out the partition behind the one
	// whose commit was under way (the device sends one at a time); in
	// 10 s some must be refused.
	if long && lead.Unavailable == 0 {
		t.Error("no seek of the cut off leader was refused: its instance passed on what it could not")
	}
	if len(lead.Seeks) == 0 {
		t.Fatal("the leader's seeks were never acknowledged")
	}
	// Every seek answers with the session state; the last one's position
	// (projected to now) is where the band must be.
	last := lead.Seeks[len(lead.Seeks)-1]
	if got := final.instances["ib"].at(float64(final.at.UnixMilli())); math.Abs(got-last.at(float64(final.at.UnixMilli()))) > 5 {
		t.Errorf("instance ib is at %.0f ms, the leader's last acknowledged seek puts the band at %.0f ms", got, last.at(float64(final.at.UnixMilli())))
	}
	// Once the lead passed to it by default, the member's claim confirms
	// it; before, every claim must have been refused.
	if fb := bd.state("fb"); fb.Claimed > 0 && !passed {
		t.Errorf("the member on ib was granted the lead %d times while it was held", fb.Claimed)
	}
	if n := disconnects(t, bd); n > 0 {
		t.Errorf("%d disconnects", n)
	}

	// The band still plays together: the leader's next seek reaches
	// every device.
	seeker := "lead"
	if passed {
		seeker = "fb"
	}
	bd.send(seeker, "seek 777000")
	refused := bd.state(seeker).Unavailable
	deadline := time.Now().Add(5 * time.Second)
	for {
		// A connection left over from the partition may time out just
		// after it and take Redis for unavailable again for a moment
		// (250 ms seen); a refused seek is retried, as the code says.
		if n := bd.state(seeker).Unavailable; n > refused {
			refused = n
			t.Logf("the seek after healing was refused with STORE_UNAVAILABLE; sending it again")
			bd.send(seeker, "seek 777000")
		}
		s := bd.sampleNow(ctx, ins)
		if s.agreed() && math.Abs(s.devices["fb"].View.at(float64(s.at.UnixMilli()))-777000) < 5_000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the seek after healing did not reach every device within 5 s: %s; refusals: lead %q, fb %q", s, bd.state("lead").Errors, bd.state("fb").Errors)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A device's cable is pulled for 3 s (20 s in make chaos), and another
// member joins meanwhile. Within the ping timeout and LEADER_GRACE_MS the
// leader is still the leader afterwards. Past it (make chaos) the server
// drops the device, keeps its lead for LEADER_GRACE_MS and then hands it
// to the most senior connected member (docs/protocol.md); the device
// recovers its connection and comes back a follower — unless the grace
// outlasts the cut (LEADER_GRACE_MS=30000), when it comes back leading.
// Either way it ends with the state every instance has, within 10 s of
// the cable going back in, and no one else leads at any sample.
func TestLinkCut(t *testing.T) {
	if !long {
		linkCut(t, 3*time.Second, "", true)
		return
	}
	t.Run("grace=5s", func(t *testing.T) { linkCut(t, 20*time.Second, "", false) })
	t.Run("grace=30s", func(t *testing.T) { linkCut(t, 20*time.Second, "LEADER_GRACE_MS=30000", true) })
}

func linkCut(t *testing.T, cut time.Duration, env string, keepsLead bool) {
	l := New(t)
	rh, ha, hb := l.Host("redis"), l.Host("ia"), l.Host("ib")
	hosts := map[string]*Host{"lead": l.Host("lead"), "fa": l.Host("fa"), "fb": l.Host("fb"), "late": l.Host("late")}
	raddr := startRedis(t, l, rh)
	var extra []string
	if env != "" {
		extra = append(extra, env)
	}
	a, b := startInstance(t, l, ha, raddr, extra...), startInstance(t, l, hb, raddr, extra...)
	ins := []*instance{a, b}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bd := newBand(t, deviceConfig(t, testLog(t)), hosts)
	bd.join(ctx, devSpec{"lead", a.url, "leader"}, devSpec{"fa", a.url, "follower"}, devSpec{"fb", b.url, "follower"})
	bd.play("lead")
	if s, ok := bd.converge(ctx, ins, 10*time.Second); !ok {
		t.Fatalf("no agreement before the fault: %s", s)
	}
	leadID := bd.state("lead").ID

	tl := twoLeaders{skipDev: "lead"} // cut off, it cannot know it was deposed
	stopSampling := bd.sampler(ctx, ins, 100*time.Millisecond, tl.add)
	cutAt := time.Now()
	hosts["lead"].LinkDown(true)
	t.Logf("lead's link down for %s", cut)
	sleep(ctx, time.Second)
	// The join runs meanwhile: on a busy machine a device takes seconds to
	// start and sync, and the cut must last what it says.
	joined := make(chan error, 1)
	go func() { joined <- bd.start(ctx, devSpec{"late", b.url, "follower"}) }()
	sleep(ctx, time.Until(cutAt.Add(cut)))
	hosts["lead"].LinkDown(false)
	restored := time.Now()
	if err := <-joined; err != nil {
		t.Fatal(err)
	}
	final, ok := bd.converge(ctx, ins, 10*time.Second)
	took := final.at.Sub(restored)
	stopSampling()
	tl.report(t)
	if !ok {
		t.Fatalf("no agreement 10 s after the link came back: %s", final)
	}
	lead := bd.state("lead")
	t.Logf("agreement %s after the link came back (lead: %d disconnects, recovered=%v, role %s): %s",
		took.Round(time.Millisecond), lead.Disconnects, lead.Recovered, lead.Role, final)
	if lead.ID != leadID {
		t.Errorf("lead came back as socket %s, not %s: its connection was not recovered", lead.ID, leadID)
	}
	leader := final.instances["ia"].Leader
	switch {
	case keepsLead && leader != leadID:
		t.Errorf("the leader is %q after the cut, not %q", leader, leadID)
	case !keepsLead && (leader == leadID || leader == ""):
		t.Errorf("the leader is %q after a cut longer than ping timeout + grace: the lead should have passed on", leader)
	}
	if late := bd.state("late"); final.devices["lead"].View.Version < late.View.Version {
		t.Error("lead did not get the state from after the member joined")
	}
	if n := disconnects(t, bd, "lead"); n > 0 {
		t.Errorf("%d disconnects among the devices whose link stayed up", n)
	}
	// A cut shorter than the ping timeout (2.5 s + 5 s) may still drop the
	// connection: TCP's retransmission backoff delays the first ping after
	// it by up to the cut's length again. So the cut device's disconnects
	// are reported, not bounded; its socket must be the same one either way.
	if lead.Disconnects > 0 && !lead.Recovered {
		t.Error("lead reconnected without recovering its connection")
	}
}
