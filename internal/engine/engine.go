// Package engine is BandSync's sync engine: it owns this instance's copy of
// every session its members are in (members, leadership, tempo, transport,
// the message, the songs), validates and applies the commands of the event
// handlers, performs the resulting events through an Outbox, and drives the
// scroll_tick scheduler and the sweeper.
//
// # One pipeline
//
// The engine runs over a store.Shared, whichever it is: store.Memory in the
// memory mode (one instance), Redis when several instances share sessions.
// The store is authoritative; a session in memory is a copy, changed only
// by the one pipeline of session.runLocked, in both modes:
//
//  1. step: the command's pure transition (transition.go) on the copy
//     gives the next state and the effects, as ordered operations;
//  2. commit: compare-and-set on (version, leader term), which logs the
//     operations under fresh log ids and publishes them in one atomic
//     step, so log order = publish order = version order; on a conflict
//     the stored record is adopted and the command stepped again, so a
//     deposed leader's command or a second claim never lands;
//  3. deliver: the store hands the batch to every instance that follows
//     the session (store.Listener), in log order;
//  4. perform: each instance carries the operations out on its own
//     sockets, events under their log id (the recovery offset) where the
//     transport uses it, and adopts the state after them. A batch that
//     does not follow on from the last one performed is completed from
//     the log first.
//
// The committing instance performs its own batch from the commit's answer
// instead of waiting for its delivery (which it then recognises by log id
// and skips), so a command's ack follows its events. Ticks are not
// published: each instance ticks its own members from the anchor in its
// copy.
//
// While the store is unavailable (Redis down; never in memory) a session
// whose members are all on this instance is served from its copy alone
// and marked dirty, and written back when the store returns: the higher
// version wins, never a lower leader term. A session with members on
// other instances refuses its members' changes then (STORE_UNAVAILABLE),
// stops naming a leader once the others may take this instance for dead,
// and adopts the stored state when the store returns (partition.go).
//
// # Locks
//
// There is no goroutine per session. A session has two locks (see the
// session type): op serialises the changes of one session and may be held
// across store I/O; mu guards the state for readers and is never held
// across I/O, and the tick scheduler takes only mu, so a slow store never
// delays a tick. Outbox calls are non-blocking and made under mu, so every
// member sees a session's events, ticks included, in the order the session
// changed. Engine.mu guards only the session map and the member->session
// index; it may be held while taking a session lock, never the other way
// round, and never while calling the store (whose deliveries take it).
// Engine.playMu guards the set of playing sessions and is a leaf.
//
// Position is derived from an anchor, never accumulated, so a session plays
// for hours without drift; see sessionState.
//
// Calls for one member are expected to be serialized by its connection (the
// per-socket read loop), which is how the member index stays exact.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/store"
)

// Config tunes the engine. A zero field takes the default of DefaultConfig.
type Config struct {
	TickInterval   time.Duration // scroll_tick period (SCROLL_TICK_INTERVAL)
	LeaderGrace    time.Duration // a detached leader keeps leadership this long
	RecoveryWindow time.Duration // a detached member stays a member this long
	MaxMembers     int           // per session
	MaxSessions    int           // per server
	OpenLeadership bool          // LEADER_POLICY=open: set_role leader takes over from a sitting leader
}

// DefaultConfig returns the defaults of the original server and
// PROTOCOL.md.
func DefaultConfig() Config {
	return Config{
		TickInterval:   16 * time.Millisecond,
		LeaderGrace:    5 * time.Second,
		RecoveryWindow: 2 * time.Minute,
		MaxMembers:     50,
		MaxSessions:    10000,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.TickInterval <= 0 {
		c.TickInterval = d.TickInterval
	}
	if c.LeaderGrace <= 0 {
		c.LeaderGrace = d.LeaderGrace
	}
	if c.RecoveryWindow <= 0 {
		c.RecoveryWindow = d.RecoveryWindow
	}
	if c.MaxMembers <= 0 {
		c.MaxMembers = d.MaxMembers
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = d.MaxSessions
	}
	return c
}

// JoinRequest is a decoded join_session.
type JoinRequest struct {
	SessionID   string
	DisplayName string // trimmed, control characters stripped; "" = "Guest"
	Role        string // "leader", "follower" or "" (follower)
	// MemberToken, when it is a member's token, takes that member's
	// place (resume.go); otherwise it is ignored.
	MemberToken string
	// MayCreate, when set, is asked before the join creates the session.
	MayCreate CreateCheck
}

// Engine holds all sessions of this server.
type Engine struct {
	cfg    Config
	policy policy
	clk    Clock
	out    Outbox
	sout   StreamOutbox // out, when it can send an event at a log id; else nil
	store  store.Shared
	inst   string // this instance's id in the store
	log    *slog.Logger
	// inProcess: the store does no I/O (store.Memory), so commits need no
	// deadline (commitCtx).
	inProcess bool

	fencing atomic.Bool // a FenceIfCutOff pass of Run is under way

	resyncMu      sync.Mutex
	resyncRunning bool
	resyncAgain   bool

	mu       sync.Mutex
	sessions map[string]*session
	index    map[string]*session // member id -> the session it is in

	playMu   sync.Mutex
	playing  []*session // sessions with isPlaying; session.playIdx is the index
	slots    int        // tick phases per interval (tickSlots)
	slotLoad []int      // playing sessions per phase; session.slot is the phase

	tickMu  sync.Mutex // serializes Tick, which reuses tickBuf
	tickBuf []*session
}

// New returns an engine over st: store.NewMemory() for one instance, or a
// store shared by several (Redis). out and st are required; log may be nil.
func New(cfg Config, clk Clock, out Outbox, st store.Shared, log *slog.Logger) *Engine {
	if clk == nil {
		clk = SystemClock()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	e := &Engine{
		cfg:      cfg,
		policy:   policy{openLeadership: cfg.OpenLeadership},
		clk:      clk,
		out:      out,
		store:    st,
		inst:     st.Instance(),
		log:      log,
		sessions: make(map[string]*session),
		index:    make(map[string]*session),
		slots:    tickSlots(cfg.TickInterval),
	}
	e.slotLoad = make([]int, e.slots)
	e.sout, _ = out.(StreamOutbox)
	_, e.inProcess = st.(interface{ InProcess() })
	st.Listen(engineListener{e})
	return e
}

// Run drives scroll ticks and the idle sweeper until ctx is done.
//
// Ticks are on a fixed grid: each wait is computed from the grid, not from
// the previous wake, so jitter never accumulates. A late wake-up ticks the
// phases it missed too, up to one interval of them (dueTicks). The tick interval
// is divided into tickSlots phases and every playing session is given the
// least busy one when it starts, so each session still ticks exactly every
// TickInterval but the sessions' ticks are spread over the interval. One
// burst of every tick at once made a leader's seek wait behind hundreds of
// tick writes; spread out, the bursts are an eighth as long.
func (e *Engine) Run(ctx context.Context) {
	step := e.cfg.TickInterval / time.Duration(e.slots)
	start := e.clk.Now()
	next := start.Add(step)
	nextSweep := start.Add(sweepEvery)
	wake := make(chan struct{}, 1)
	for {
		t := e.clk.AfterFunc(next.Sub(e.clk.Now()), func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		})
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
		}
		now := e.clk.Now()
		first, n, after := dueTicks(start, next, now, step, e.slots)
		for g := first; g < first+n; g++ {
			e.tickSlot(int(g % int64(e.slots)))
		}
		if !now.Before(nextSweep) {
			// On its own goroutine: a pass takes session locks, which
			// a command may hold across a slow store call, and ticks
			// must not wait on that.
			if e.fencing.CompareAndSwap(false, true) {
				go func() { defer e.fencing.Store(false); e.FenceIfCutOff() }()
			}
			e.Sweep()
			nextSweep = now.Add(sweepEvery)
		}
		next = after
	}
}

// dueTicks says which grid points (start + g*step) a wake-up at now for
// the deadline due ticks: every one from due to the last at or before
// now, so the sessions of a phase the timer woke too late for still tick,
// a little late, instead of missing a tick. Skipping them cost up to an
// eighth of the ticks whenever the machine was busy enough to delay the
// timer by a phase (2 ms). At most slots grid points are ticked, the most
// recent: each session ticks at most once per wake-up, however late, and
// a stall never turns into a burst. next is the grid point after the last
// one ticked, even when the timer fired early.
func dueTicks(start, due, now time.Time, step time.Duration, slots int) (first, n int64, next time.Time) {
	first = int64(due.Sub(start) / step)
	last := max(int64(now.Sub(start)/step), first)
	n = min(last-first+1, int64(slots))
	return last - n + 1, n, start.Add(time.Duration(last+1) * step)
}

// tickSlots is how many phases the tick interval is split into: phases at
// least 2 ms apart, at most 8.
func tickSlots(interval time.Duration) int {
	return max(1, min(8, int(interval/(2*time.Millisecond))))
}

// tickSlot ticks the playing sessions of one phase, each with its position
// derived at the instant it is ticked: a change applied while the pass is
// under way is then never stamped with an instant before it.
func (e *Engine) tickSlot(slot int) {
	e.tickMu.Lock()
	defer e.tickMu.Unlock()
	e.playMu.Lock()
	for _, s := range e.playing {
		if s.slot == slot {
			e.tickBuf = append(e.tickBuf, s)
		}
	}
	e.playMu.Unlock()
	for _, s := range e.tickBuf {
		now := e.clk.Now()
		s.tick(now, epochMs(now))
	}
	clear(e.tickBuf) // let removed sessions be collected
	e.tickBuf = e.tickBuf[:0]
}

// Tick sends one scroll_tick to every playing session, with positions
// derived at now, whatever their phase. Tests call it directly.
func (e *Engine) Tick(now time.Time) {
	e.tickMu.Lock()
	defer e.tickMu.Unlock()
	e.playMu.Lock()
	e.tickBuf = append(e.tickBuf[:0], e.playing...)
	e.playMu.Unlock()
	nowMs := epochMs(now)
	for _, s := range e.tickBuf {
		s.tick(now, nowMs)
	}
	clear(e.tickBuf) // let removed sessions be collected
	e.tickBuf = e.tickBuf[:0]
}

// setPlaying adds s to or removes it from the playing set. Called by
// session methods under the session lock; playMu is a leaf lock.
func (e *Engine) setPlaying(s *session, playing bool) {
	e.playMu.Lock()
	defer e.playMu.Unlock()
	switch {
	case playing && s.playIdx < 0:
		s.playIdx = len(e.playing)
		e.playing = append(e.playing, s)
		s.slot = 0
		for i, n := range e.slotLoad {
			if n < e.slotLoad[s.slot] {
				s.slot = i
			}
		}
		e.slotLoad[s.slot]++
	case !playing && s.playIdx >= 0:
		last := len(e.playing) - 1
		moved := e.playing[last]
		e.playing[s.playIdx] = moved
		moved.playIdx = s.playIdx
		e.playing[last] = nil
		e.playing = e.playing[:last]
		s.playIdx = -1
		e.slotLoad[s.slot]--
	}
}

// Sweep drops from memory the sessions this instance no longer needs: no
// member here, and no detached member whose timers it may have to run.
// The store keeps them (until its TTL: SESSION_TTL with Redis,
// SESSION_IDLE_TIMEOUT_MS in memory) for whoever joins next, here or on
// another instance. Run calls it every sweepEvery; it returns how many
// sessions it dropped.
func (e *Engine) Sweep() int {
	var dropped []string
	e.mu.Lock()
	for id, s := range e.sessions {
		if !s.dropIfUnneeded() {
			continue
		}
		delete(e.sessions, id)
		dropped = append(dropped, id)
	}
	e.mu.Unlock()
	// Outside e.mu: the store's deliveries take it.
	for _, id := range dropped {
		e.store.Unfollow(id)
	}
	return len(dropped)
}

// all returns every session this instance holds.
func (e *Engine) all() []*session {
	e.mu.Lock()
	defer e.mu.Unlock()
	all := make([]*session, 0, len(e.sessions))
	for _, s := range e.sessions {
		all = append(all, s)
	}
	return all
}

func (e *Engine) lookup(sessionID string) *session {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sessions[sessionID]
}

func (e *Engine) memberSession(memberID string) *session {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.index[memberID]
}

func (e *Engine) unindex(memberID string, s *session) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.index[memberID] == s {
		delete(e.index, memberID)
	}
}

func (e *Engine) serverFull() *Error {
	return newError(protocol.CodeSessionFull,
		"the server has no room for new sessions (limit %d); join an existing session or try again later", e.cfg.MaxSessions)
}

// liveOrFull returns the live session, or SESSION_FULL when creating it
// would pass MaxSessions, or neither when the caller should create it.
func (e *Engine) liveOrFull(sessionID string) (*session, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := e.sessions[sessionID]; s != nil {
		return s, nil
	}
	if len(e.sessions) >= e.cfg.MaxSessions {
		return nil, e.serverFull()
	}
	return nil, nil
}

// sessionFor returns the session, loading it from the store or creating
// it when this instance does not hold it. The session is followed before
// it is read, so no batch committed after the read can be missed.
func (e *Engine) sessionFor(sessionID string, mayCreate CreateCheck) (*session, error) {
	if s, err := e.liveOrFull(sessionID); s != nil || err != nil {
		return s, err
	}
	var (
		rec            store.SessionRecord
		found          bool
		cursor         string
		followed       bool
		sh             = e.store
		ctx, cancelCtx = storeCtx()
	)
	defer cancelCtx()
	if sh.Available() {
		var err error
		rec, found, cursor, err = sh.Follow(ctx, sessionID)
		switch {
		case err == nil:
			followed = true
		case sh.Available():
			e.log.Error("loading session failed", "session", sessionID, "err", err)
			return nil, newError(protocol.CodeInternal, "the session store is unavailable; try again")
		}
	}
	s, created, err := e.install(sessionID, rec, found, cursor, followed, mayCreate)
	if followed && !created {
		// Another caller installed it first, or it may not be created:
		// balance this Follow, outside e.mu (deliveries take it).
		sh.Unfollow(sessionID)
	}
	return s, err
}

// install puts a session read from the store (or a new one) in the map,
// unless another caller did first.
func (e *Engine) install(sessionID string, rec store.SessionRecord, found bool, cursor string, followed bool, mayCreate CreateCheck) (s *session, created bool, err error) {
	now := e.clk.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := e.sessions[sessionID]; s != nil {
		return s, false, nil
	}
	if len(e.sessions) >= e.cfg.MaxSessions {
		return nil, false, e.serverFull()
	}
	var st sessionState
	if found {
		st = stateFromRecord(rec, now)
		if st.maxMembers <= 0 {
			st.maxMembers = e.cfg.MaxMembers
		}
	} else {
		if err := mayCreate.check(); err != nil {
			return nil, false, err
		}
		st = newSessionState(sessionID, e.cfg.MaxMembers, now)
		e.log.Debug("session created", "session", sessionID)
	}
	s = newSession(e, st)
	s.followed, s.dirty = followed, !followed
	s.setCursorLocked(cursor)
	s.mu.Lock()
	if st.playing {
		e.setPlaying(s, true)
	}
	s.reconcileTimersLocked()
	s.mu.Unlock()
	e.sessions[sessionID] = s
	return s, true, nil
}

// Join puts memberID in the session, creating the session if absent, and
// sends the snapshot to the joiner and user_joined, room_stats and snapshot
// to the room. Joining a session the member is already in only re-sends the
// snapshot to it. Joining another session leaves the previous one first.
func (e *Engine) Join(memberID string, r JoinRequest) (State, error) {
	if err := ValidateSessionID(r.SessionID); err != nil {
		return State{}, err
	}
	name, err := normalizeDisplayName(r.DisplayName)
	if err != nil {
		return State{}, err
	}
	if err := validateRole(r.Role, true); err != nil {
		return State{}, err
	}
	if r.MemberToken != "" {
		if st, ok, err := e.resume(memberID, r.SessionID, r.MemberToken, r.MayCreate); ok || err != nil {
			return st, err
		}
	}
	token := newMemberToken()
	// A retry is needed only if the sweeper closed the session between
	// lookup and join; a fresh session is not idle, so one retry suffices.
	for range 3 {
		s, err := e.sessionFor(r.SessionID, r.MayCreate)
		if err != nil {
			return State{}, err
		}
		if prev := e.memberSession(memberID); prev != nil && prev != s {
			if err := s.refusal(memberID); err != nil {
				return State{}, err
			}
			e.leave(prev, memberID)
		}
		st, err := s.run(joinCmd{member: memberID, name: name, role: r.Role, token: token}, e.clk.Now())
		if errors.Is(err, errClosed) {
			continue
		}
		if err != nil {
			return State{}, err
		}
		e.mu.Lock()
		e.index[memberID] = s
		e.mu.Unlock()
		return st, nil
	}
	return State{}, newError(protocol.CodeInternal, "session %q was being deleted; try again", r.SessionID)
}

// leave removes memberID from s and from the index.
func (e *Engine) leave(s *session, memberID string) error {
	_, err := s.run(leaveCmd{member: memberID, reason: ReasonLeaderLeft}, e.clk.Now())
	if err == nil || errors.Is(err, errClosed) || notMember(err) {
		e.unindex(memberID, s)
	}
	return err
}

// Leave takes memberID out of the session: user_left, room_stats and
// snapshot go to the room; a leaving leader hands over at once.
func (e *Engine) Leave(memberID, sessionID string) error {
	if err := ValidateSessionID(sessionID); err != nil {
		return err
	}
	s := e.lookup(sessionID)
	if s == nil {
		return notInSession(sessionID)
	}
	if err := e.leave(s, memberID); err != nil {
		if errors.Is(err, errClosed) {
			return notInSession(sessionID)
		}
		return err
	}
	return nil
}

// command validates the session id and runs c on that session.
func (e *Engine) command(sessionID string, c command) (State, error) {
	if err := ValidateSessionID(sessionID); err != nil {
		return State{}, err
	}
	s := e.lookup(sessionID)
	if s == nil {
		return State{}, notInSession(sessionID)
	}
	st, err := s.run(c, e.clk.Now())
	if errors.Is(err, errClosed) {
		return State{}, notInSession(sessionID)
	}
	return st, err
}

// SetRole claims ("leader") or gives up ("follower") leadership. Claiming
// succeeds while leadership is vacant, or always with OpenLeadership;
// otherwise NOT_LEADER. Asking for the role one already has changes
// nothing.
func (e *Engine) SetRole(memberID, sessionID, role string) (State, error) {
	if err := ValidateSessionID(sessionID); err != nil {
		return State{}, err
	}
	if err := validateRole(role, false); err != nil {
		return State{}, err
	}
	return e.command(sessionID, setRoleCmd{member: memberID, role: role})
}

// SetTempo changes the tempo (leader only), keeping beat phase continuous.
func (e *Engine) SetTempo(memberID, sessionID string, tempo float64) (State, error) {
	if err := ValidateSessionID(sessionID); err != nil {
		return State{}, err
	}
	if err := validateTempo(tempo); err != nil {
		return State{}, err
	}
	return e.command(sessionID, setTempoCmd{member: memberID, tempo: tempo})
}

// Play starts playback delayMs from now (leader only). Play while playing
// succeeds and changes nothing.
func (e *Engine) Play(memberID, sessionID string, delayMs float64) (State, error) {
	if err := ValidateSessionID(sessionID); err != nil {
		return State{}, err
	}
	if err := validateDelay(delayMs); err != nil {
		return State{}, err
	}
	return e.command(sessionID, playCmd{member: memberID, delayMs: delayMs})
}

// Pause holds the position where it is (leader only). Pause while paused
// succeeds and changes nothing.
func (e *Engine) Pause(memberID, sessionID string) (State, error) {
	return e.command(sessionID, pauseCmd{member: memberID})
}

// Seek moves the position (leader only), playing or not.
func (e *Engine) Seek(memberID, sessionID string, positionMs float64) (State, error) {
	if err := ValidateSessionID(sessionID); err != nil {
		return State{}, err
	}
	if err := validatePosition(positionMs); err != nil {
		return State{}, err
	}
	return e.command(sessionID, seekCmd{member: memberID, position: positionMs})
}

// Stop pauses and returns to position 0 (leader only).
func (e *Engine) Stop(memberID, sessionID string) (State, error) {
	return e.command(sessionID, stopCmd{member: memberID})
}

// UpdateMessage sets the session's message (any member).
func (e *Engine) UpdateMessage(memberID, sessionID, message string) (State, error) {
	if err := ValidateSessionID(sessionID); err != nil {
		return State{}, err
	}
	msg, err := normalizeMessage(message)
	if err != nil {
		return State{}, err
	}
	return e.command(sessionID, messageCmd{member: memberID, message: msg})
}

// SyncRequest returns the position now for a member. The engine sends
// nothing: the caller answers with sync_response (or the ack).
func (e *Engine) SyncRequest(memberID, sessionID string) (SyncResponse, error) {
	if err := ValidateSessionID(sessionID); err != nil {
		return SyncResponse{}, err
	}
	s := e.lookup(sessionID)
	if s == nil {
		return SyncResponse{}, notInSession(sessionID)
	}
	return s.sync(memberID, e.clk.Now())
}

// Detach records that memberID's socket was lost but may recover: the
// member stays, marked connected:false. A detached leader keeps leadership
// for LeaderGrace (playback keeps running); a member not re-attached within
// RecoveryWindow is removed.
func (e *Engine) Detach(memberID string) {
	if s := e.memberSession(memberID); s != nil {
		_, _ = s.run(detachCmd{member: memberID, inst: e.inst}, e.clk.Now())
	}
}

// Attach records that memberID's socket recovered: connected again, and
// still leader if it led and the grace period has not run out. sessionIDs
// are the sessions the recovered socket was in; with a shared store it may
// have been on another instance, which is how its session is found.
func (e *Engine) Attach(memberID string, sessionIDs ...string) {
	s := e.memberSession(memberID)
	for _, id := range sessionIDs {
		if s != nil {
			break
		}
		if ValidateSessionID(id) == nil {
			s, _ = e.sessionFor(id, nil)
		}
	}
	if s == nil {
		return
	}
	if _, err := s.run(attachCmd{member: memberID, inst: e.inst}, e.clk.Now()); err != nil {
		return
	}
	e.mu.Lock()
	e.index[memberID] = s
	e.mu.Unlock()
}

// Remove takes memberID out of its session for good (explicit disconnect,
// or recovery gave up).
func (e *Engine) Remove(memberID string) {
	if s := e.memberSession(memberID); s != nil {
		_ = e.leave(s, memberID)
	}
}

// Session returns a snapshot of the session as of now.
func (e *Engine) Session(sessionID string) (State, bool) {
	if s := e.lookup(sessionID); s != nil {
		return s.snapshot(e.clk.Now())
	}
	// A session this instance does not hold is read from the store.
	if !e.store.Available() {
		return State{}, false
	}
	ctx, cancel := storeCtx()
	defer cancel()
	rec, found, err := e.store.Load(ctx, sessionID)
	if err != nil || !found {
		return State{}, false
	}
	now := e.clk.Now()
	st := stateFromRecord(rec, now)
	return st.snapshot(now), true
}

// SessionIDs lists the sessions this instance holds, sorted, at most limit
// of them (limit <= 0: all), and how many there are.
func (e *Engine) SessionIDs(limit int) (ids []string, total int) {
	e.mu.Lock()
	ids = make([]string, 0, len(e.sessions))
	for id := range e.sessions {
		ids = append(ids, id)
	}
	e.mu.Unlock()
	slices.Sort(ids)
	if limit > 0 && len(ids) > limit {
		return ids[:limit], len(ids)
	}
	return ids, len(ids)
}

// Stats counts sessions, playing sessions and members (connected or
// detached).
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	st := Stats{Sessions: len(e.sessions), Members: len(e.index)}
	e.mu.Unlock()
	e.playMu.Lock()
	st.PlayingSessions = len(e.playing)
	e.playMu.Unlock()
	return st
}

// FlushAll writes back every session changed from memory while the store
// was unavailable and not written back since, for shutdown.
func (e *Engine) FlushAll(ctx context.Context) error {
	var errs []error
	for _, s := range e.all() {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if err := s.flush(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *session) flush() error {
	s.lock()
	defer s.unlock()
	if s.closed || !s.dirty || s.resyncLocked() && !s.dirty {
		return nil
	}
	return fmt.Errorf("engine: session %q was not written back to the store", s.st.id)
}

// Follow makes sure this instance follows the session (loading it if
// needed). The Redis recovery store calls it before it replays a
// session's log to a recovering socket, so that nothing published after
// the replay's read is missed.
func (e *Engine) Follow(sessionID string) error {
	if err := ValidateSessionID(sessionID); err != nil {
		return err
	}
	_, err := e.sessionFor(sessionID, nil)
	return err
}

// Reap detaches the members that were on a dead instance from the given
// sessions: their leader grace and recovery windows start now, here and on
// every instance that holds the sessions. The store's presence tracking
// calls it for instances whose heartbeat stopped.
func (e *Engine) Reap(instance string, sessionIDs []string) {
	if instance == e.inst {
		return
	}
	for _, id := range sessionIDs {
		if ValidateSessionID(id) != nil {
			continue
		}
		s, err := e.sessionFor(id, nil)
		if err != nil {
			e.log.Warn("reaping a dead instance's members failed", "instance", instance, "session", id, "err", err)
			continue
		}
		st, err := s.run(detachInstanceCmd{inst: instance}, e.clk.Now())
		if err == nil {
			e.log.Info("members of a dead instance detached", "instance", instance, "session", id, "version", st.Version)
		}
	}
}

// StreamOutbox is implemented by an Outbox that can send an event under
// its log id as the recovery offset. Without it the events go out through
// the plain Outbox methods.
type StreamOutbox interface {
	ToSessionAt(sessionID, event string, payload any, offset string)
	ToMemberAt(memberID, event string, payload any, offset string)
}

// Tuning of the pipeline.
const (
	// maxCommitAttempts bounds the compare-and-set retries of one command.
	maxCommitAttempts = 16
	// storeTimeout bounds one store call made for a command.
	storeTimeout = 3 * time.Second
	// sweepEvery is how often sessions this instance no longer needs are
	// dropped from memory.
	sweepEvery = time.Second
)

func storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), storeTimeout)
}

// commitCtx is storeCtx for a command's commit, the one store call every
// change makes: an in-process store does no I/O to bound, and the
// deadline's context and timer were a tenth of the allocations of a seek.
func (e *Engine) commitCtx() (context.Context, context.CancelFunc) {
	if e.inProcess {
		return context.Background(), func() {}
	}
	return storeCtx()
}
