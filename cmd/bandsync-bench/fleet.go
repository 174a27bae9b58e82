package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bandsync/bandsync/internal/benchclient"
	"github.com/bandsync/bandsync/internal/protocol"
)

// Seek positions encode the seek's sequence number: the k-th seek of a
// session goes to seekBase + k*seekStep ms. A follower can then tell from
// the position alone which seek it is seeing, without a map shared with
// the leader. Each seek jumps 20 s ahead, far more than playback advances
// between seeks, so a tick carrying a position below the latest seek's is
// certainly from before that seek. 86,400,000 ms (the protocol's limit)
// leaves room for over 4,000 seeks per session.
const (
	seekBase = 1_000_000
	seekStep = 20_000
	maxSeeks = (86_400_000 - seekBase) / seekStep
	seekRing = 64 // seeks remembered per session, for matching late receipts
)

// setupParallel is how many sessions are set up at once: enough to keep
// the server busy, few enough not to look like a connection flood.
const setupParallel = 32

// joinTimeout bounds the wait for a join's snapshot or the room's play.
const joinTimeout = 15 * time.Second

func seqOf(pos float64) (int64, bool) {
	k := (pos - seekBase) / seekStep
	if k < 0 || k != float64(int64(k)) {
		return 0, false
	}
	return int64(k), true
}

// fleet is a set of sessions whose members are bench connections. The
// same code drives the real server (fanout, ticks, ramp, idle) and the
// in-process relay, so their figures are comparable.
type fleet struct {
	// d has one dialer per instance. Member i of session j connects to
	// d[(i+j) % len(d)]: each session's members are spread over the
	// instances, and so are the leaders (and with them the seeks).
	d      []*dialer
	runID  string
	tick   time.Duration // a follower's expected tick period; 0: none asked for
	origin time.Time     // zero of the monotonic send times
	// joinTicks is the tickIntervalMs every member asks for (-1: the key
	// is left out, as the mobile app does).
	joinTicks int

	// seqBase is the first seek sequence of the next window: sequences
	// go on rising across windows (ramp steps), or a follower that saw
	// the last window's seeks would take the next one's as old.
	// Touched by seekLoop only.
	seqBase int64

	measuring atomic.Bool // ticks count only while set
	closing   atomic.Bool

	mu        sync.Mutex
	sessions  []*session
	drops     int64
	lastDrop  string
	errEvents int64
	lastError string
}

type session struct {
	idx   int // position in the fleet: which instance its leader is on
	id    string
	idArg []byte // {"sessionId":"..."}
	// members[0] is the leader: it joins first, into an empty session.
	members []*member

	// sentAt[k%seekRing] is when seek k was sent (ns since origin), valid
	// while sentSeq holds k. The leader stores the time, then the
	// sequence; followers load in the opposite order.
	sentAt  [seekRing]atomic.Int64
	sentSeq [seekRing]atomic.Int64
	seeks   int64 // seeks sent while measuring; touched by the seek loop only
}

type member struct {
	f      *fleet
	s      *session
	c      *benchclient.Conn
	leader bool

	// Closed by the read goroutine; the flags say whether it has been.
	joined, playing         chan struct{}
	joinedDone, playingDone bool

	mu sync.Mutex // guards st against the harvest
	st memberStats
}

// memberStats is what one follower observed in the current window.
type memberStats struct {
	seekLat, jitter, lag, posErr benchclient.Samples
	ticks, stale, bySnapshot     int64

	// Carried across windows.
	lastSeq            int64 // highest seek sequence received, -1 for none
	seekPos            float64
	lastTick           time.Time
	anchorPos, anchorT float64
	anchored           bool
}

// newFleet prepares sessions on the instances ds dial; joinTicks is the
// tickIntervalMs the members ask for (-1: none given) and tick the period
// at which a follower then expects ticks (0 for none).
func newFleet(ds []*dialer, tick time.Duration, joinTicks int) *fleet {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &fleet{d: ds, runID: hex.EncodeToString(b[:]), tick: tick, joinTicks: joinTicks, origin: time.Now()}
}

// newFleetFor is newFleet with one dialer per URL of wsURLs, each sized
// for total connections.
func newFleetFor(cfg config, wsURLs []string, total int) *fleet {
	ds := make([]*dialer, len(wsURLs))
	for i, u := range wsURLs {
		ds[i] = newDialer(u, cfg.SourceIPs, total, cfg.Readers == "goroutine")
	}
	return newFleet(ds, cfg.tickPeriod(), cfg.ClientTick)
}

// addSessions creates one session per entry of sizes, with that many
// members, all joined. Sessions are set up setupParallel at a time.
func (f *fleet) addSessions(ctx context.Context, sizes []int) ([]*session, error) {
	f.mu.Lock()
	base := len(f.sessions)
	added := make([]*session, len(sizes))
	for i := range sizes {
		id := "bench-" + f.runID + "-" + strconv.Itoa(base+i)
		added[i] = &session{idx: base + i, id: id, idArg: []byte(`{"sessionId":"` + id + `"}`)}
	}
	f.sessions = append(f.sessions, added...)
	f.mu.Unlock()

	jobs := make(chan int)
	errc := make(chan error, setupParallel)
	var wg sync.WaitGroup
	for range min(setupParallel, len(sizes)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := f.setup(ctx, added[i], sizes[i]); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		}()
	}
feed:
	for i := range sizes {
		select {
		case jobs <- i:
		case err := <-errc:
			errc <- err
			break feed
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errc:
		return added, err
	default:
		return added, ctx.Err()
	}
}

func (f *fleet) setup(ctx context.Context, s *session, size int) error {
	for i := range size {
		c, err := f.d[(i+s.idx)%len(f.d)].dial()
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		m := &member{f: f, s: s, c: c, leader: i == 0, joined: make(chan struct{}), playing: make(chan struct{})}
		m.st.lastSeq = -1
		f.mu.Lock()
		s.members = append(s.members, m)
		f.mu.Unlock()
		c.Start(m.handle, m.closed)
		arg := `{"sessionId":"` + s.id + `","displayName":"m` + strconv.Itoa(i) + `"`
		if f.joinTicks >= 0 {
			arg += `,"tickIntervalMs":` + strconv.Itoa(f.joinTicks)
		}
		arg += "}"
		if err := c.Emit(protocol.EventJoinSession, []byte(arg)); err != nil {
			return fmt.Errorf("join_session: %w", err)
		}
		// The leader must be in before anyone else joins, or it would
		// not be the leader; followers are waited for one by one too,
		// which keeps the server's join rate gentle.
		if err := f.wait(ctx, m.joined, "snapshot after join_session"); err != nil {
			return err
		}
	}
	return nil
}

func (f *fleet) wait(ctx context.Context, ch <-chan struct{}, what string) error {
	t := time.NewTimer(joinTimeout)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		f.mu.Lock()
		last := f.lastError
		f.mu.Unlock()
		if last != "" {
			return fmt.Errorf("no %s within %v; last server error: %s", what, joinTimeout, last)
		}
		return fmt.Errorf("no %s within %v", what, joinTimeout)
	}
}

// play starts every given session and waits until every member has seen
// it start (an isPlaying snapshot, or the play event).
func (f *fleet) play(ctx context.Context, ss []*session) error {
	for _, s := range ss {
		if err := s.members[0].c.Emit(protocol.EventPlay, s.idArg); err != nil {
			return fmt.Errorf("play: %w", err)
		}
	}
	for _, s := range ss {
		for _, m := range s.members {
			if err := f.wait(ctx, m.playing, "isPlaying snapshot after play"); err != nil {
				return err
			}
		}
	}
	return nil
}

// close disconnects every member and waits, briefly, for the readers.
func (f *fleet) close() {
	f.closing.Store(true)
	f.mu.Lock()
	ss := f.sessions
	f.mu.Unlock()
	for _, s := range ss {
		for _, m := range s.members {
			_ = m.c.Close()
		}
	}
	deadline := time.After(5 * time.Second)
	for _, s := range ss {
		for _, m := range s.members {
			select {
			case <-m.c.Done():
			case <-deadline:
				return
			}
		}
	}
}

func (m *member) closed(err error) {
	if m.f.closing.Load() {
		return
	}
	m.f.mu.Lock()
	m.f.drops++
	if err != nil {
		m.f.lastDrop = err.Error()
	}
	m.f.mu.Unlock()
}

// handle runs on the member's read goroutine for every packet.
func (m *member) handle(now time.Time, pkt []byte) {
	name, arg, ok := benchclient.Event(pkt)
	if !ok {
		return
	}
	switch string(name) {
	case protocol.EventScrollTick:
		m.onTick(now, arg)
	case protocol.EventSeek:
		m.onTransport(now, arg, false)
	case protocol.EventPlay:
		// A server sends play and an isPlaying snapshot; the relay only
		// forwards the leader's play.
		if !m.playingDone {
			m.playingDone = true
			close(m.playing)
		}
		m.onTransport(now, arg, false)
	case protocol.EventSnapshot:
		if !m.joinedDone {
			if id, _ := benchclient.String(arg, "sessionId"); id == m.s.id {
				m.joinedDone = true
				close(m.joined)
			}
		}
		if p, _ := benchclient.Bool(arg, "isPlaying"); p && !m.playingDone {
			m.playingDone = true
			close(m.playing)
		}
		m.onTransport(now, arg, true)
	case protocol.EventError, protocol.EventRateLimitExceeded:
		m.f.mu.Lock()
		m.f.errEvents++
		m.f.lastError = string(name) + " " + string(arg)
		m.f.mu.Unlock()
	}
}

// onTransport takes a new anchor from a seek, play or snapshot, and counts
// a seek receipt the first time a follower sees a seek's position, by
// whichever event carries it first.
func (m *member) onTransport(now time.Time, arg []byte, snapshot bool) {
	pos, ok := benchclient.Float(arg, "position")
	if !ok {
		pos, ok = benchclient.Float(arg, "positionMs")
	}
	if !ok {
		return
	}
	ts, tsOK := benchclient.Float(arg, "serverTimestamp")
	m.mu.Lock()
	defer m.mu.Unlock()
	st := &m.st
	if tsOK {
		st.anchorPos, st.anchorT, st.anchored = pos, ts, true
	}
	seq, ok := seqOf(pos)
	if !ok || seq <= st.lastSeq {
		return
	}
	st.lastSeq, st.seekPos = seq, pos
	if m.leader {
		return
	}
	slot := seq % seekRing
	if m.s.sentSeq[slot].Load() != seq {
		return // too late to match; counted as missing
	}
	st.seekLat.Add(now.Sub(m.f.origin) - time.Duration(m.s.sentAt[slot].Load()))
	if snapshot {
		st.bySnapshot++
	}
}

func (m *member) onTick(now time.Time, arg []byte) {
	if m.leader {
		return
	}
	pos, ok1 := benchclient.Float(arg, "positionMs")
	ts, ok2 := benchclient.Float(arg, "serverTimestamp")
	m.mu.Lock()
	defer m.mu.Unlock()
	st := &m.st
	last := st.lastTick
	st.lastTick = now
	if !m.f.measuring.Load() {
		return
	}
	st.ticks++
	if !last.IsZero() && m.f.tick > 0 {
		st.jitter.Add((now.Sub(last) - m.f.tick).Abs())
	}
	if !ok1 || !ok2 {
		return
	}
	// Same machine, same clock: receipt minus serverTimestamp is the
	// time the tick spent in the server's queues, the kernel and ours.
	st.lag.Add(time.Duration(now.UnixNano() - int64(ts*1e6)))
	switch {
	case st.seekPos > 0 && pos < st.seekPos:
		st.stale++ // a position from before a seek this member already saw
	case st.anchored:
		want := st.anchorPos + (ts - st.anchorT)
		st.posErr.Add(time.Duration((pos - want) * 1e6).Abs())
	}
}

// seekLoop makes every leader seek once per interval until end, spread
// evenly: seek j goes to session j%S at t0 + j*interval/S. One goroutine
// paces all leaders, which is cheaper and steadier than a ticker each.
func (f *fleet) seekLoop(ctx context.Context, interval time.Duration, end time.Time) error {
	f.mu.Lock()
	ss := f.sessions
	f.mu.Unlock()
	step := interval / time.Duration(len(ss))
	t0 := time.Now()
	var buf []byte
	var rounds int64
	defer func() { f.seqBase += rounds }()
	for j := int64(0); ; j++ {
		due := t0.Add(time.Duration(j) * step)
		if !due.Before(end) || ctx.Err() != nil {
			return ctx.Err()
		}
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		s := ss[j%int64(len(ss))]
		seq := f.seqBase + j/int64(len(ss))
		rounds = j/int64(len(ss)) + 1
		if seq >= maxSeeks {
			return errors.New("seek positions exhausted; shorten -duration or lengthen -interval")
		}
		buf = append(buf[:0], `{"sessionId":"`...)
		buf = append(buf, s.id...)
		buf = append(buf, `","position":`...)
		buf = strconv.AppendInt(buf, seekBase+seq*seekStep, 10)
		buf = append(buf, '}')
		slot := seq % seekRing
		s.sentAt[slot].Store(int64(time.Since(f.origin)))
		s.sentSeq[slot].Store(seq)
		s.seeks++
		// A leader the server dropped (counted in drops) cannot seek;
		// its followers' receipts then count as missing, and the run
		// goes on to report what the others saw.
		_ = s.members[0].c.Emit(protocol.EventSeek, buf)
	}
}

// window is what all followers observed during one measurement.
type window struct {
	seekLat, jitter, lag, posErr benchclient.Samples
	ticks, stale, bySnapshot     int64
	seeksExpected                int64 // follower receipts the sent seeks call for
	followers                    int
	duration                     time.Duration
	drops, errEvents             int64
	lastDrop, lastError          string
	cpu                          cpuUse
}

func (w *window) delivery(tick time.Duration) float64 {
	if tick <= 0 {
		return 0
	}
	exp := float64(w.followers) * float64(w.duration) / float64(tick)
	if exp == 0 {
		return 0
	}
	return float64(w.ticks) / exp
}

func (w *window) missing() int64 { return w.seeksExpected - int64(w.seekLat.Len()) }

// measure runs one window of d: ticks are counted, and leaders seek every
// seekEvery when it is not zero. Seek receipts are given a grace period
// after the window to arrive.
func (f *fleet) measure(ctx context.Context, d, seekEvery time.Duration, serverPIDs []int) (*window, error) {
	f.harvest(nil) // drop whatever arrived before the window
	f.mu.Lock()
	for _, s := range f.sessions {
		s.seeks = 0
	}
	f.mu.Unlock()
	cpu := startCPU(serverPIDs)
	t0 := time.Now()
	f.measuring.Store(true)
	var err error
	if seekEvery > 0 {
		err = f.seekLoop(ctx, seekEvery, t0.Add(d))
	} else {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	f.measuring.Store(false)
	elapsed := time.Since(t0)
	w := &window{duration: elapsed}
	w.cpu = cpu.stop()
	if seekEvery > 0 {
		time.Sleep(min(time.Second, 4*seekEvery))
	}
	f.harvest(w)
	return w, err
}

// harvest moves every follower's observations into w (when not nil) and
// resets them for the next window.
func (f *fleet) harvest(w *window) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sessions {
		for _, m := range s.members {
			m.mu.Lock()
			if w != nil && !m.leader {
				w.followers++
				w.seekLat.Merge(&m.st.seekLat)
				w.jitter.Merge(&m.st.jitter)
				w.lag.Merge(&m.st.lag)
				w.posErr.Merge(&m.st.posErr)
				w.ticks += m.st.ticks
				w.stale += m.st.stale
				w.bySnapshot += m.st.bySnapshot
				w.seeksExpected += s.seeks
			}
			m.st.seekLat.Reset()
			m.st.jitter.Reset()
			m.st.lag.Reset()
			m.st.posErr.Reset()
			m.st.ticks, m.st.stale, m.st.bySnapshot = 0, 0, 0
			m.mu.Unlock()
		}
	}
	if w != nil {
		w.drops, w.errEvents, w.lastDrop, w.lastError = f.drops, f.errEvents, f.lastDrop, f.lastError
	}
}
