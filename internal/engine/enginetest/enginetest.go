// Package enginetest provides test doubles for the engine: a manual clock
// whose timers fire only when the test advances it, and an Outbox that
// records every call.
package enginetest

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
)

// FakeClock is an engine.Clock that moves only when told to.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	seq    int
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *FakeClock
	when    time.Time
	seq     int
	f       func()
	stopped bool
}

// NewFakeClock returns a clock reading start.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{now: start} }

// Now returns the current fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f for now+d. It never runs f itself; Advance does.
func (c *FakeClock) AfterFunc(d time.Duration, f func()) engine.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{c: c, when: c.now.Add(d), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	return t
}

// Stop cancels the timer if it has not fired.
func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.stopped {
		return false
	}
	t.stopped = true
	t.c.timers = slices.DeleteFunc(t.c.timers, func(x *fakeTimer) bool { return x == t })
	return true
}

// Advance moves the clock forward by d, firing due timers in deadline order
// (the clock reads each timer's deadline while it runs), in the calling
// goroutine and without holding the clock's lock.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		sort.SliceStable(c.timers, func(i, j int) bool {
			a, b := c.timers[i], c.timers[j]
			if !a.when.Equal(b.when) {
				return a.when.Before(b.when)
			}
			return a.seq < b.seq
		})
		if len(c.timers) == 0 || c.timers[0].when.After(target) {
			c.now = target
			c.mu.Unlock()
			return
		}
		t := c.timers[0]
		c.timers = c.timers[1:]
		t.stopped = true
		if t.when.After(c.now) {
			c.now = t.when
		}
		c.mu.Unlock()
		t.f()
	}
}

// Pending reports how many timers are armed.
func (c *FakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Call kinds recorded by Recorder.
const (
	KindJoinRoom   = "join_room"
	KindLeaveRoom  = "leave_room"
	KindToSession  = "to_session"
	KindVolatile   = "to_session_volatile"
	KindToMember   = "to_member"
	KindDisconnect = "disconnect"
)

// Call is one recorded Outbox call.
type Call struct {
	Kind    string
	Session string // JoinRoom, LeaveRoom, ToSession, ToSessionVolatile
	Member  string // JoinRoom, LeaveRoom, ToMember, Disconnect
	Event   string
	Payload any
}

// Recorder is an engine.Outbox that records calls. Safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	calls  []Call
	notify chan struct{}
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder { return &Recorder{notify: make(chan struct{}, 1)} }

func (r *Recorder) add(c Call) {
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// Notify receives a value after calls were recorded since the last receive.
func (r *Recorder) Notify() <-chan struct{} { return r.notify }

// JoinRoom records the call.
func (r *Recorder) JoinRoom(memberID, sessionID string) {
	r.add(Call{Kind: KindJoinRoom, Member: memberID, Session: sessionID})
}

// LeaveRoom records the call.
func (r *Recorder) LeaveRoom(memberID, sessionID string) {
	r.add(Call{Kind: KindLeaveRoom, Member: memberID, Session: sessionID})
}

// ToSession records the call.
func (r *Recorder) ToSession(sessionID, event string, payload any) {
	r.add(Call{Kind: KindToSession, Session: sessionID, Event: event, Payload: payload})
}

// ToSessionVolatile records the call.
func (r *Recorder) ToSessionVolatile(sessionID, event string, payload any) {
	r.add(Call{Kind: KindVolatile, Session: sessionID, Event: event, Payload: payload})
}

// ToMember records the call.
func (r *Recorder) ToMember(memberID, event string, payload any) {
	r.add(Call{Kind: KindToMember, Member: memberID, Event: event, Payload: payload})
}

// Disconnect records the call.
func (r *Recorder) Disconnect(memberID string) {
	r.add(Call{Kind: KindDisconnect, Member: memberID})
}

// Calls returns a copy of every call so far.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// Reset forgets the calls so far.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.calls = nil
	r.mu.Unlock()
}

// Events returns the calls that sent event (any kind).
func (r *Recorder) Events(event string) []Call {
	var out []Call
	for _, c := range r.Calls() {
		if c.Event == event {
			out = append(out, c)
		}
	}
	return out
}

// Names returns "kind:event" (or "kind:member" for room calls) per call, to
// assert on order.
func (r *Recorder) Names() []string {
	var out []string
	for _, c := range r.Calls() {
		switch c.Kind {
		case KindJoinRoom, KindLeaveRoom, KindDisconnect:
			out = append(out, c.Kind+":"+c.Member)
		case KindToMember:
			out = append(out, c.Kind+":"+c.Member+":"+c.Event)
		default:
			out = append(out, c.Kind+":"+c.Event)
		}
	}
	return out
}

var _ engine.Outbox = (*Recorder)(nil)
var _ engine.Clock = (*FakeClock)(nil)
