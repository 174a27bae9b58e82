// Package precision measures how closely BandSync devices agree on the
// song's position through bad networks: devices run the real SDK in their
// own Node.js processes, each behind a Toxiproxy proxy whose delay toxic
// draws every chunk's delay from a distribution per direction, and each
// device's positionAt() is scored against the server's anchor on the
// machine's one clock (cmd/bandsync-precision, docs/sync.md).
package precision

import (
	"math/rand/v2"
	"time"

	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
)

// DelayType is the name DelayToxic is registered under.
const DelayType = "bandsync_delay"

// StallType is the name StallToxic is registered under.
const StallType = "bandsync_stall"

func init() {
	toxics.Register(DelayType, new(DelayToxic))
	toxics.Register(StallType, new(StallToxic))
}

// DelayToxic delays every chunk by a draw from N(MeanMs, StddevMs),
// truncated at zero, and keeps the chunks in order, as TCP does: a chunk
// is never released before the one ahead of it, so a slow chunk holds up
// the ones behind it (head-of-line blocking). Toxiproxy's own latency
// toxic draws jitter uniformly and in whole milliseconds, and cannot hold
// a stream, which is why this one exists. Its queue lives in the stub's
// state, so when Toxiproxy interrupts it to rewire the chain (a toxic
// added or removed next to it) nothing in flight is dropped or reordered.
type DelayToxic struct {
	MeanMs   float64 `json:"mean_ms"`
	StddevMs float64 `json:"stddev_ms"`
	Seed     uint64  `json:"seed"`
}

type heldChunk struct {
	c       *stream.StreamChunk
	release time.Time
}

type delayState struct {
	rng  *rand.Rand
	held []heldChunk
	last time.Time // release time of the newest chunk queued
}

// NewState implements toxics.StatefulToxic.
func (t *DelayToxic) NewState() any {
	return &delayState{rng: rand.New(rand.NewPCG(t.Seed, t.Seed^0x9e3779b97f4a7c15))}
}

// GetBufferSize implements toxics.BufferedToxic: reading ahead of the
// release keeps the sender's side flowing, as a real path with a queue
// would.
func (t *DelayToxic) GetBufferSize() int { return 1024 }

func (t *DelayToxic) delay(st *delayState) time.Duration {
	d := t.MeanMs + st.rng.NormFloat64()*t.StddevMs
	if d < 0 {
		d = 0
	}
	return time.Duration(d * float64(time.Millisecond))
}

// Pipe implements toxics.Toxic.
func (t *DelayToxic) Pipe(stub *toxics.ToxicStub) {
	st, ok := stub.State.(*delayState)
	if !ok {
		st = t.NewState().(*delayState)
		stub.State = st
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		// Release everything that is due, in order.
		now := time.Now()
		for len(st.held) > 0 && !st.held[0].release.After(now) {
			select {
			case stub.Output <- st.held[0].c:
			case <-stub.Interrupt:
				return
			}
			st.held[0] = heldChunk{}
			st.held = st.held[1:]
		}
		wait := time.Hour
		if len(st.held) > 0 {
			wait = st.held[0].release.Sub(now)
		}
		timer.Reset(wait)
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				for _, h := range st.held {
					stub.Output <- h.c
				}
				st.held = nil
				stub.Close()
				return
			}
			release := time.Now().Add(t.delay(st))
			if release.Before(st.last) {
				release = st.last
			}
			st.last = release
			st.held = append(st.held, heldChunk{c: c, release: release})
		case <-timer.C:
		}
	}
}

// Cleanup implements toxics.CleanupToxic: a removed toxic hands on what it
// still holds, in order, rather than dropping bytes of a TCP stream.
func (t *DelayToxic) Cleanup(stub *toxics.ToxicStub) {
	st, ok := stub.State.(*delayState)
	if !ok {
		return
	}
	for _, h := range st.held {
		stub.Output <- h.c
	}
	st.held = nil
}

// StallToxic holds every chunk until it is removed, then hands them all on
// in order: a radio that stops delivering for a while without the TCP
// connection breaking.
type StallToxic struct{}

type stallState struct{ held []*stream.StreamChunk }

// NewState implements toxics.StatefulToxic.
func (t *StallToxic) NewState() any { return &stallState{} }

// Pipe implements toxics.Toxic.
func (t *StallToxic) Pipe(stub *toxics.ToxicStub) {
	st, ok := stub.State.(*stallState)
	if !ok {
		st = &stallState{}
		stub.State = st
	}
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				t.Cleanup(stub)
				stub.Close()
				return
			}
			st.held = append(st.held, c)
		}
	}
}

// Cleanup implements toxics.CleanupToxic.
func (t *StallToxic) Cleanup(stub *toxics.ToxicStub) {
	st, ok := stub.State.(*stallState)
	if !ok {
		return
	}
	for _, c := range st.held {
		stub.Output <- c
	}
	st.held = nil
}
