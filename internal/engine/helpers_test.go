package engine_test

import (
	"errors"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/engine/enginetest"
	"github.com/bandsync/bandsync/internal/store"
)

var t0 = time.Date(2025, 3, 1, 20, 0, 0, 0, time.UTC)

func ms(t time.Time) float64 { return float64(t.UnixNano()) / 1e6 }

type fixture struct {
	t   *testing.T
	clk *enginetest.FakeClock
	out *enginetest.Recorder
	st  *store.Memory
	e   *engine.Engine
}

func newFixture(t *testing.T, edit ...func(*engine.Config)) *fixture {
	t.Helper()
	cfg := engine.Config{
		TickInterval:   16 * time.Millisecond,
		LeaderGrace:    5 * time.Second,
		RecoveryWindow: 2 * time.Minute,
		MaxMembers:     50,
		MaxSessions:    100,
	}
	for _, f := range edit {
		f(&cfg)
	}
	f := &fixture{t: t, clk: enginetest.NewFakeClock(t0), out: enginetest.NewRecorder(), st: store.NewMemory()}
	f.e = engine.New(cfg, f.clk, f.out, f.st, nil)
	return f
}

func (f *fixture) join(member, session string, role ...string) engine.State {
	f.t.Helper()
	r := engine.JoinRequest{SessionID: session, DisplayName: "name-" + member}
	if len(role) > 0 {
		r.Role = role[0]
	}
	st, err := f.e.Join(member, r)
	if err != nil {
		f.t.Fatalf("Join(%s, %s): %v", member, session, err)
	}
	return st
}

func (f *fixture) state(session string) engine.State {
	f.t.Helper()
	st, ok := f.e.Session(session)
	if !ok {
		f.t.Fatalf("session %q does not exist", session)
	}
	return st
}

// ok(t)(cmd(...)) fails the test on a command error and returns the state.
func ok(t *testing.T) func(engine.State, error) engine.State {
	return func(st engine.State, err error) engine.State {
		t.Helper()
		if err != nil {
			t.Fatalf("command failed: %v", err)
		}
		return st
	}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var e *engine.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want *engine.Error with code %s", err, code)
	}
	if e.Code != code {
		t.Fatalf("code = %s (%s), want %s", e.Code, e.Message, code)
	}
	if e.Message == "" {
		t.Fatalf("error %s has no message", code)
	}
}

func leaderOf(st engine.State) string {
	if st.LeaderSocketID == nil {
		return ""
	}
	return *st.LeaderSocketID
}

func roleOf(t *testing.T, st engine.State, member string) string {
	t.Helper()
	for _, m := range st.Members {
		if m.SocketID == member {
			return m.Role
		}
	}
	t.Fatalf("%s is not a member of %s", member, st.SessionID)
	return ""
}

// lastPayload returns the payload of the last recorded call of event.
func lastPayload[T any](t *testing.T, out *enginetest.Recorder, event string) T {
	t.Helper()
	calls := out.Events(event)
	if len(calls) == 0 {
		t.Fatalf("no %s was sent", event)
	}
	p, ok := calls[len(calls)-1].Payload.(T)
	if !ok {
		t.Fatalf("%s payload is %T", event, calls[len(calls)-1].Payload)
	}
	return p
}
