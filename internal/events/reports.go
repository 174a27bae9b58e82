package events

import (
	"sync"
	"time"

	"github.com/bandsync/bandsync/internal/socketio"
)

// Latency and sync-quality reports are the client's word, so they feed
// the metrics (and the alerts on them) only within bounds: a heartbeat
// echo counts when it carries a timestamp the server really sent lately,
// once per heartbeat per socket, and a sync_quality report at most once
// a second per socket; both only from members of a session. Anything else
// is answered as before and ignored.

// recentBeats remembers the last heartbeat timestamps sent.
type recentBeats struct {
	mu   sync.Mutex
	sent [4]float64
	next int
}

func (b *recentBeats) add(ts float64) {
	b.mu.Lock()
	b.sent[b.next%len(b.sent)] = ts
	b.next++
	b.mu.Unlock()
}

func (b *recentBeats) has(ts float64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.sent {
		if s != 0 && s == ts {
			return true
		}
	}
	return false
}

// reportState is what a socket's reports have been charged so far.
type reportState struct {
	lastEcho    float64   // the heartbeat timestamp last counted
	lastQuality time.Time // when a sync_quality report was last counted
}

const qualityEvery = time.Second

func isMember(c *socketio.Conn) bool { return len(sessionsOf(c.Rooms())) > 0 }

// countEcho reports whether a heartbeat echo of ts from c is a sample.
func (h *Handlers) countEcho(c *socketio.Conn, ts float64) bool {
	cl, ok := c.Value.(*client)
	if !ok || ts == cl.reports.lastEcho || !h.beats.has(ts) || !isMember(c) {
		return false
	}
	cl.reports.lastEcho = ts
	return true
}

// countQuality reports whether a sync_quality report from c is a sample.
func (h *Handlers) countQuality(c *socketio.Conn, now time.Time) bool {
	cl, ok := c.Value.(*client)
	if !ok || now.Sub(cl.reports.lastQuality) < qualityEvery || !isMember(c) {
		return false
	}
	cl.reports.lastQuality = now
	return true
}
