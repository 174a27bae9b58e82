package socketio

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/bandsync/bandsync/internal/wsframe"
)

// RecoveryStore keeps what connection-state recovery needs: the recent
// non-volatile packets with the room (or socket id) they went to, and the
// sessions of sockets that dropped and may come back. The memory
// implementation serves one instance; a shared implementation lets a client
// recover on another instance.
type RecoveryStore interface {
	// Append records a packet sent to target. Offsets are strictly
	// increasing in the order of the calls.
	Append(ctx context.Context, target string, offset uint64, packet []byte) error
	// Since returns, in offset order, the packets after offset sent to any
	// of targets. ok is false when packets after offset may have been
	// discarded, in which case the client cannot be recovered.
	Since(ctx context.Context, offset uint64, targets []string) (records []Record, ok bool, err error)
	// Save keeps a dropped socket's session under its private id.
	Save(ctx context.Context, pid string, s Saved) error
	// Take returns and forgets the session saved under pid, if it has not
	// expired.
	Take(ctx context.Context, pid string) (Saved, bool, error)
}

// Record is one packet kept for replay.
type Record struct {
	Offset uint64
	Packet []byte
}

// Saved is a dropped socket's session.
type Saved struct {
	SID   string
	Rooms []string
	At    time.Time
}

// MemoryRecovery is a RecoveryStore for a single instance. Packets live in
// a ring bounded by count, total bytes and age, so a burst cannot grow it
// without limit; a client whose offset fell out of the ring reconnects
// without recovery rather than with a gap.
type MemoryRecovery struct {
	window   time.Duration
	maxCount int
	maxBytes int
	now      func() time.Time

	mu       sync.Mutex
	ring     []recorded
	head     int // index of the oldest entry
	n        int
	bytes    int
	lastSeq  uint64 // offset of the newest entry ever appended
	sessions map[string]Saved
	swept    time.Time
}

type recorded struct {
	seq    uint64
	target string
	packet []byte
	at     time.Time
}

// NewMemoryRecovery keeps packets and sessions for window, holding at most
// maxCount packets of at most maxBytes in total.
func NewMemoryRecovery(window time.Duration, maxCount, maxBytes int) *MemoryRecovery {
	return &MemoryRecovery{
		window: window, maxCount: maxCount, maxBytes: maxBytes, now: time.Now,
		ring: make([]recorded, min(maxCount, 1024)), sessions: make(map[string]Saved),
	}
}

// Append implements RecoveryStore.
func (m *MemoryRecovery) Append(_ context.Context, target string, offset uint64, packet []byte) error {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.evictLocked(now, len(packet), true)
	if m.n == len(m.ring) {
		m.growLocked()
	}
	i := (m.head + m.n) % len(m.ring)
	m.ring[i] = recorded{seq: offset, target: target, packet: packet, at: now}
	m.n++
	m.bytes += len(packet)
	m.lastSeq = offset
	return nil
}

// evictLocked drops entries that are too old and, when adding is set,
// enough of the oldest to make room for one more entry of size bytes.
func (m *MemoryRecovery) evictLocked(now time.Time, size int, adding bool) {
	for m.n > 0 {
		e := &m.ring[m.head]
		full := adding && (m.n >= m.maxCount || m.bytes+size > m.maxBytes)
		if !full && now.Sub(e.at) <= m.window {
			return
		}
		m.bytes -= len(e.packet)
		*e = recorded{}
		m.head = (m.head + 1) % len(m.ring)
		m.n--
	}
}

// growLocked doubles the ring (up to maxCount), so a quiet server does not
// hold the whole bound in memory.
func (m *MemoryRecovery) growLocked() {
	bigger := make([]recorded, min(2*len(m.ring), m.maxCount))
	for k := 0; k < m.n; k++ {
		bigger[k] = m.ring[(m.head+k)%len(m.ring)]
	}
	m.ring, m.head = bigger, 0
}

// Since implements RecoveryStore.
func (m *MemoryRecovery) Since(_ context.Context, offset uint64, targets []string) ([]Record, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.evictLocked(m.now(), 0, false)
	// Offsets are contiguous, so the client misses nothing exactly when the
	// packet right after its offset is still here (or none came since).
	first := m.lastSeq + 1
	if m.n > 0 {
		first = m.ring[m.head].seq
	}
	if offset > m.lastSeq || offset+1 < first {
		return nil, false, nil
	}
	var out []Record
	for k := 0; k < m.n; k++ {
		e := &m.ring[(m.head+k)%len(m.ring)]
		if e.seq <= offset {
			continue
		}
		for _, t := range targets {
			if e.target == t {
				out = append(out, Record{Offset: e.seq, Packet: e.packet})
				break
			}
		}
	}
	return out, true, nil
}

// Save implements RecoveryStore.
func (m *MemoryRecovery) Save(_ context.Context, pid string, s Saved) error {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	// Sweep expired sessions now and then rather than on every save, so a
	// mass disconnect stays linear.
	if now.Sub(m.swept) > time.Second {
		m.swept = now
		for k, v := range m.sessions {
			if now.Sub(v.At) > m.window {
				delete(m.sessions, k)
			}
		}
	}
	m.sessions[pid] = s
	return nil
}

// Take implements RecoveryStore.
func (m *MemoryRecovery) Take(_ context.Context, pid string) (Saved, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[pid]
	if !ok {
		return Saved{}, false, nil
	}
	delete(m.sessions, pid)
	if m.now().Sub(s.At) > m.window {
		return Saved{}, false, nil
	}
	return s, true, nil
}

// replay queues recovered packets ahead of every live frame: live frames
// that arrived during the lookup waited in held and follow, minus any the
// replay already carried.
func (c *Conn) replay(records []Record) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	var lastReplayed uint64
	for _, r := range records {
		c.queue = append(c.queue, newFrame(wsframe.OpText, r.Packet))
		lastReplayed = r.Offset
	}
	for _, f := range c.held {
		if f.seq != 0 && f.seq <= lastReplayed {
			continue
		}
		c.queue = append(c.queue, f)
	}
	c.held = nil
	c.holding = false
	start := !c.writing && c.qlenLocked() > 0
	if start {
		c.writing = true
	}
	c.mu.Unlock()
	if start {
		c.srv.schedule(c)
	}
}

func formatOffset(seq uint64) string { return strconv.FormatUint(seq, 10) }

func parseOffset(s string) (uint64, bool) {
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil
}

func (s *Server) tryRecover(c *Conn, pid, offsetStr string) bool {
	ctx := context.Background()
	offset, ok := s.parseClientOffset(offsetStr)
	if !ok {
		return false
	}
	saved, ok, err := s.opts.Recovery.Take(ctx, pid)
	if err != nil || !ok {
		return false
	}
	if live, taken := s.Conn(saved.SID); taken {
		// The socket is alive: whoever presents its pid is not it. The
		// record goes back as it was, so a refused attempt costs the
		// real owner nothing.
		s.restoreSaved(ctx, live, pid, saved)
		return false
	}
	c.id, c.pid, c.recovered = saved.SID, pid, true
	c.mu.Lock()
	c.holding = true
	c.mu.Unlock()
	s.register(c)
	targets := append([]string{saved.SID}, saved.Rooms...)
	for _, r := range saved.Rooms {
		c.Join(r)
	}
	records, ok, err := s.opts.Recovery.Since(ctx, offset, targets)
	if err != nil || !ok {
		// Too late to replay without a gap: a fresh socket is honest.
		for _, r := range saved.Rooms {
			c.Leave(r)
		}
		s.forget(c)
		c.mu.Lock()
		c.holding, c.held = false, nil
		c.mu.Unlock()
		c.id, c.pid, c.recovered = "", "", false
		return false
	}
	if !s.replayFits(records) {
		// More than the client can absorb before its queue overflows
		// (and it would come back to ask again): it resumes as itself,
		// in its rooms, and the application sends a fresh state instead.
		records, c.replaySkipped = nil, true
		s.stats.replaysSkipped.Add(1)
	}
	c.enqueueControl(newFrame(wsframe.OpText, connectReply(c.id, c.pid)))
	c.connected.Store(true)
	c.replay(records)
	s.stats.recovered.Add(1)
	s.connected(c)
	return true
}

// replayFits reports whether a recovery's missed packets fit in half the
// write queue and in replayMaxBytes: a replay is queued at once, and one
// that does not fit would overflow the queue of the very client it is for.
func (s *Server) replayFits(records []Record) bool {
	if len(records) > s.opts.WriteQueueSize/2 {
		return false
	}
	n := 0
	for _, r := range records {
		n += len(r.Packet)
	}
	return n <= replayMaxBytes
}

// replayMaxBytes bounds one recovering socket's replay: 49 of them at
// once then cost a few MB, and a phone on a 100 KB/s link drains one in
// under three seconds.
const replayMaxBytes = 256 << 10

// restoreSaved puts back a recovery record taken for a socket that is
// still alive.
func (s *Server) restoreSaved(ctx context.Context, live *Conn, pid string, saved Saved) {
	if sr := s.shared(); sr != nil {
		sr.Track(pid, Saved{SID: live.id, Rooms: live.Rooms()})
		return
	}
	_ = s.opts.Recovery.Save(ctx, pid, saved)
}
