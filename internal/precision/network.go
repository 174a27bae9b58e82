package precision

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Dist is a one-way delay distribution: N(MeanMs, StddevMs), truncated at
// zero. The zero Dist adds no delay.
type Dist struct {
	MeanMs   float64 `json:"meanMs"`
	StddevMs float64 `json:"stddevMs"`
}

func (d Dist) String() string {
	if d.StddevMs == 0 {
		return fmt.Sprintf("%g ms", d.MeanMs)
	}
	return fmt.Sprintf("N(%g,%g) ms", d.MeanMs, d.StddevMs)
}

// Network is an embedded Toxiproxy: one TCP proxy per device link, on
// loopback, with no API port (the harness drives it in-process).
type Network struct {
	api  *toxiproxy.ApiServer
	seed uint64
}

// NewNetwork returns an empty network; seed makes the delay draws
// repeatable.
func NewNetwork(seed uint64) *Network {
	return &Network{api: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop()), seed: seed}
}

// Link is one device's path to the server.
type Link struct {
	p    *toxiproxy.Proxy
	seed uint64
	up   Dist
	down Dist
}

// Link starts a proxy on a free loopback port in front of upstream
// (host:port).
func (n *Network) Link(name, upstream string) (*Link, error) {
	return n.LinkAt(name, "127.0.0.1:0", upstream)
}

// LinkAt is Link listening on a given address, for a peer that must be
// told where the link is before it starts (a server's REDIS_URL).
func (n *Network) LinkAt(name, listen, upstream string) (*Link, error) {
	p := toxiproxy.NewProxy(n.api, name, listen, upstream)
	if err := n.api.Collection.Add(p, true); err != nil {
		return nil, fmt.Errorf("proxy %s: %w", name, err)
	}
	n.seed++
	return &Link{p: p, seed: n.seed * 1000}, nil
}

// Addr is where devices connect to go through the link.
func (l *Link) Addr() string { return l.p.Listen }

// SetDelay replaces the link's delays (up: device to server). A toxic that
// is replaced hands on what it holds, in order.
func (l *Link) SetDelay(up, down Dist) error {
	for _, dir := range []struct {
		stream string
		d      Dist
		old    Dist
	}{{"upstream", up, l.up}, {"downstream", down, l.down}} {
		name := "delay_" + dir.stream
		if dir.old != (Dist{}) {
			if err := l.p.Toxics.RemoveToxic(context.Background(), name); err != nil {
				return fmt.Errorf("remove %s: %w", name, err)
			}
		}
		if dir.d == (Dist{}) {
			continue
		}
		l.seed++
		if err := l.add(name, DelayType, dir.stream, DelayToxic{MeanMs: dir.d.MeanMs, StddevMs: dir.d.StddevMs, Seed: l.seed}); err != nil {
			return err
		}
	}
	l.up, l.down = up, down
	return nil
}

// Stall holds everything in both directions (on) or releases it (off).
func (l *Link) Stall(on bool) error {
	for _, stream := range []string{"upstream", "downstream"} {
		name := "stall_" + stream
		if on {
			if err := l.add(name, StallType, stream, StallToxic{}); err != nil {
				return err
			}
			continue
		}
		if err := l.p.Toxics.RemoveToxic(context.Background(), name); err != nil {
			return fmt.Errorf("remove %s: %w", name, err)
		}
	}
	return nil
}

func (l *Link) add(name, typ, stream string, attrs any) error {
	body, err := json.Marshal(map[string]any{"name": name, "type": typ, "stream": stream, "toxicity": 1, "attributes": attrs})
	if err != nil {
		return err
	}
	if _, err := l.p.Toxics.AddToxicJson(bytes.NewReader(body)); err != nil {
		return fmt.Errorf("add %s: %w", name, err)
	}
	return nil
}

// Close stops the proxy and drops its connections.
func (l *Link) Close() { l.p.Stop() }
