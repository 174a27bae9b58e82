package engine

// This file is the delivering half of the pipeline (session.go has the
// committing half): batches the store publishes reach a session's inbox,
// and each one is performed once, in log order, on this instance's
// sockets; a gap is completed from the store's log first. It also brings a
// copy back in line with the store after an outage (resync).

import (
	"github.com/bandsync/bandsync/internal/protocol"

	"github.com/bandsync/bandsync/internal/store"
)

// engineListener receives the store's publications for the engine.
type engineListener struct{ e *Engine }

func (l engineListener) Deliver(sessionID string, b store.Batch) {
	s := l.e.lookup(sessionID)
	if s == nil {
		return
	}
	// A batch already performed here (this instance's own commit,
	// performed from the commit's answer, coming back from Redis) is
	// dropped at once: queuing it cost a goroutine and the session's lock
	// per command, only for applyLocked to skip it.
	if seq, ok := store.LogSeq(b.Last); ok && seq <= s.performed.Load() {
		return
	}
	s.enqueue(b)
}

func (l engineListener) Resync() { l.e.resyncAll() }

// enqueue queues a delivered batch without blocking (the store may call it
// from its own publishing path). If a caller holds op through lock(), that
// caller performs it before it lets go; otherwise one goroutine is started
// to. A slow session so never holds up the others' deliveries.
func (s *session) enqueue(b store.Batch) {
	s.xmu.Lock()
	s.inbox = append(s.inbox, b)
	start := !s.holding && !s.draining
	if start {
		s.draining = true
	}
	s.xmu.Unlock()
	if start {
		go s.drain()
	}
}

func (s *session) drain() {
	s.lock()
	s.xmu.Lock()
	s.draining = false
	s.xmu.Unlock()
	s.unlock() // performs the inbox
}

// applyLocked performs batch b unless it was already performed, completing
// a gap from the log first, then adopts the state after it: next, when b
// is this instance's own commit, or the batch's record when it is newer
// than the copy. Events and state change under one hold of mu, so no tick
// falls between them. Members that are no longer local are noted for
// unlock to unindex. The caller holds op, not mu.
func (s *session) applyLocked(b store.Batch, next *sessionState) {
	if next == nil && store.CompareLogIDs(b.Last, s.cursor) <= 0 {
		return
	}
	before := s.localMembers(s.local[:0])
	if b.Prev != s.cursor {
		s.fillLocked()
	}
	s.mu.Lock()
	if store.CompareLogIDs(b.Last, s.cursor) > 0 {
		s.performMuLocked(b.Ops)
		s.setCursorLocked(b.Last)
	}
	switch {
	case next != nil:
		s.adoptMuLocked(*next)
	case b.Record != nil && b.Record.Version > s.st.version:
		s.adoptMuLocked(s.fromRecord(*b.Record))
	}
	s.mu.Unlock()
	for _, id := range before {
		if i := s.st.find(id); i < 0 || s.st.members[i].inst != s.e.inst {
			s.gone = append(s.gone, id)
		}
	}
	s.local = before // reused: a batch is applied per command
}

// setCursorLocked records that the log has been performed up to id. The
// caller holds op.
func (s *session) setCursorLocked(id string) {
	s.cursor = id
	seq, _ := store.LogSeq(id)
	s.performed.Store(seq)
}

// localMembers appends to ids the members whose socket is on this
// instance.
func (s *session) localMembers(ids []string) []string {
	for _, m := range s.st.members {
		if m.inst == s.e.inst {
			ids = append(ids, m.id)
		}
	}
	return ids
}

// performMuLocked carries out operations on this instance's sockets; an
// event recorded in the log goes out under its log id, the recovery
// offset, when the Outbox can send at one. The caller holds op and mu.
func (s *session) performMuLocked(ops []store.Op) {
	o, so, id := s.e.out, s.e.sout, s.st.id
	for _, op := range ops {
		// Encoded already (by a store that leaves the process, the
		// commit's own ops included), the payload is not encoded again.
		p := op.Value
		if op.Payload != nil {
			p = op.Payload
		}
		switch op.Kind {
		case store.OpBroadcast:
			if so != nil && op.ID != "" {
				so.ToSessionAt(id, op.Event, p, op.ID)
			} else {
				o.ToSession(id, op.Event, p)
			}
		case store.OpToMember:
			if so != nil && op.ID != "" {
				so.ToMemberAt(op.Member, op.Event, p, op.ID)
			} else {
				o.ToMember(op.Member, op.Event, p)
			}
		case store.OpJoin:
			o.JoinRoom(op.Member, id)
		case store.OpLeave:
			o.LeaveRoom(op.Member, id)
		}
	}
}

// fillLocked performs what the log holds after the cursor, then refreshes
// the copy from the stored record. When the log no longer reaches back to
// the cursor, the members here get a fresh snapshot instead of the events
// they cannot have. The caller holds op, not mu.
func (s *session) fillLocked() {
	sh := s.e.store
	if !sh.Available() {
		return
	}
	ctx, cancel := storeCtx()
	defer cancel()
	batches, complete, err := sh.Since(ctx, s.st.id, s.cursor)
	if err != nil {
		s.e.log.Warn("reading the session log failed", "session", s.st.id, "err", err)
		return
	}
	for _, b := range batches {
		if store.CompareLogIDs(b.Last, s.cursor) <= 0 {
			continue
		}
		s.mu.Lock()
		s.performMuLocked(b.Ops)
		s.setCursorLocked(b.Last)
		s.mu.Unlock()
	}
	// An incomplete log lost the entry at the cursor: trimmed, or cut by
	// a failover, and then the stored record of the copy's version may be
	// another state than the copy.
	changed := s.reloadLocked(!complete)
	if !complete || (changed && len(batches) == 0) {
		s.mu.Lock()
		s.e.out.ToSession(s.st.id, protocol.EventSnapshot, s.st.snapshot(s.e.clk.Now()))
		s.mu.Unlock()
	}
}

// resyncAll brings every copy back in line with the store, one pass at a
// time; a request during a pass makes another pass follow.
func (e *Engine) resyncAll() {
	e.resyncMu.Lock()
	if e.resyncRunning {
		e.resyncAgain = true
		e.resyncMu.Unlock()
		return
	}
	e.resyncRunning = true
	e.resyncMu.Unlock()
	go func() {
		for {
			for _, s := range e.all() {
				s.resync()
			}
			e.resyncMu.Lock()
			if !e.resyncAgain {
				e.resyncRunning = false
				e.resyncMu.Unlock()
				return
			}
			e.resyncAgain = false
			e.resyncMu.Unlock()
		}
	}()
}

// resync follows the session if it is not followed yet, writes its state
// back (the higher version wins), and completes it from the log.
func (s *session) resync() {
	s.lock()
	defer s.unlock()
	if !s.closed {
		s.resyncLocked()
	}
}

// resyncLocked is resync under op; it reports whether the copy is now in
// line with the store (followed and not dirty).
func (s *session) resyncLocked() bool {
	e, sh := s.e, s.e.store
	if !sh.Available() {
		return false
	}
	ctx, cancel := storeCtx()
	defer cancel()
	if !s.followed {
		_, _, cursor, err := sh.Follow(ctx, s.st.id)
		if err != nil {
			return false
		}
		s.followed = true
		s.setCursorLocked(cursor)
	}
	// The members connected here now; if this instance was cut off long
	// enough to be taken for dead, the others detached them meanwhile.
	var live []string
	for _, m := range s.st.members {
		if m.connected && m.inst == e.inst {
			live = append(live, m.id)
		}
	}
	now := e.clk.Now()
	if s.dirty && (s.fenced || s.spansInstances()) {
		if !s.healLocked() {
			return false
		}
		s.fillLocked()
		s.reattachLocked(live)
		return true
	}
	s.pending = nil // the copy holds it and is written back, or loses to a newer state
	ops := []store.Op{{Kind: store.OpBroadcast, Event: protocol.EventSnapshot, Value: s.st.snapshot(now)}}
	res, err := sh.WriteBack(ctx, s.st.record(), ops)
	if err != nil {
		e.log.Warn("writing a session back failed", "session", s.st.id, "err", err)
		return false
	}
	if res.Written {
		if s.dirty {
			e.log.Info("session written back to the store", "session", s.st.id, "version", s.st.version)
		}
		s.dirty = false
	} else if res.Found && s.dirty {
		// Changes made here from memory lost to a newer stored state:
		// the members here are told what holds now.
		e.log.Info("session replaced by the newer stored one", "session", s.st.id,
			"version", s.st.version, "storedVersion", res.Current.Version)
		s.adoptRecordLocked(res.Current, true)
		s.dirty = false
		s.mu.Lock()
		e.out.ToSession(s.st.id, protocol.EventSnapshot, s.st.snapshot(now))
		s.mu.Unlock()
	}
	// What others committed meanwhile comes from the log, in order.
	s.fillLocked()
	s.reattachLocked(live)
	return true
}

// reattachLocked attaches again the members connected here that the
// others detached while this instance was cut off (taken for dead).
func (s *session) reattachLocked(live []string) {
	e := s.e
	for _, id := range live {
		if i := s.st.find(id); i >= 0 && !s.st.members[i].connected && s.st.members[i].inst == e.inst {
			e.log.Info("re-attaching a member detached while this instance was cut off", "session", s.st.id, "member", id)
			_, _ = s.runLocked(attachCmd{member: id, inst: e.inst}, e.clk.Now())
		}
	}
}
