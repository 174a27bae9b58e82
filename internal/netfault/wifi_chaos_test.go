//go:build linux && chaos

package netfault

import (
	"context"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/precision"
)

// Venue Wi-Fi: the "wifi" device's path to the server goes through a
// Toxiproxy link delaying each chunk N(50,30) ms each way, and its host
// drops 2% of its packets both ways (iptables statistic DROP on its
// veth). The "lan" device goes through a clean proxy and the leader
// connects directly; all on their own hosts. Nobody disconnects, and the
// devices agree: p99 of the distance between any two devices' positions
// at the same instants within precision.PairP99Ms.
func TestVenueWifi(t *testing.T) {
	const dur = 60 * time.Second
	l := New(t)
	rh, hs := l.Host("redis"), l.Host("srv")
	hosts := map[string]*Host{"leader": l.Host("leader"), "lan": l.Host("lan"), "wifi": l.Host("wifi")}
	raddr := startRedis(t, l, rh)
	srv := startInstance(t, l, hs, raddr)
	ctx, cancel := context.WithTimeout(context.Background(), dur+2*time.Minute)
	defer cancel()

	cfg := deviceConfig(t, testLog(t))
	cfg.ServerURL, cfg.Duration, cfg.Warmup, cfg.LinkHost = srv.url, dur, 5*time.Second, l.RootIP()
	bd := newBand(t, cfg, hosts)
	cfg.Wrap, cfg.OnLine = bd.cfg.Wrap, bd.cfg.OnLine
	var sc precision.Scenario
	for _, s := range precision.Scenarios(dur) {
		if s.Name == "jitter" {
			sc = s
		}
	}
	sc.Desc += "; 2% loss each way on the wifi host"
	hosts["wifi"].Loss(0.02)
	res, err := precision.RunScenario(ctx, cfg, sc)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := hosts["wifi"].Counters(); err == nil {
		t.Logf("wifi host's loss rule (packets, bytes dropped):\n%s", out)
	}
	for _, d := range res.Devices {
		t.Logf("device %s: n=%d error p50 %.2f p99 %.2f max %.2f ms, errorMs covers %.0f%%", d.Name, d.N, d.P50, d.P99, d.Max, 100*d.Covered)
	}
	for _, p := range res.Pairs {
		t.Logf("pair %s-%s: n=%d disagreement p50 %.2f p99 %.2f max %.2f ms", p.A, p.B, p.N, p.P50, p.P99, p.Max)
		if p.N < int(dur.Milliseconds())/int(cfg.SampleMs)/2 {
			t.Errorf("pair %s-%s: only %d common samples", p.A, p.B, p.N)
		}
		if !(p.P99 <= precision.PairP99Ms) {
			t.Errorf("pair %s-%s: p99 disagreement %.2f ms > %.1f ms", p.A, p.B, p.P99, precision.PairP99Ms)
		}
	}
	if n := disconnects(t, bd); n > 0 {
		t.Errorf("%d disconnects through the venue Wi-Fi", n)
	}
}
