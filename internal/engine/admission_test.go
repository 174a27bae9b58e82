package engine_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/protocol"
)

// 49 joins that dropped at once (a script, or a venue Wi-Fi hiccup) must
// not lock a present member out of a full session for the recovery
// window: a dropped member makes way, the leader's seat is kept.
func TestDetachedMembersMakeWayForAConnectedJoiner(t *testing.T) {
	f := newFixture(t)
	f.join("leader", "band")
	for i := range 49 {
		id := fmt.Sprintf("ghost%d", i)
		f.join(id, "band")
		f.e.Detach(id)
	}
	st := f.join("drummer", "band")
	if len(st.Members) != 50 || st.Members[len(st.Members)-1].SocketID != "drummer" {
		t.Fatalf("%d members after the real member joined, want 50 with it last (one dropped member made way)", len(st.Members))
	}
	if st.LeaderSocketID == nil || *st.LeaderSocketID != "leader" {
		t.Fatalf("leader %v, want the connected leader kept", st.LeaderSocketID)
	}
	// With everyone connected the session is full as before.
	for i := range 49 {
		f.e.Attach(fmt.Sprintf("ghost%d", i))
	}
	if _, err := f.e.Join("late", engine.JoinRequest{SessionID: "band"}); err == nil {
		t.Fatal("a 51st member joined a session whose members are all connected")
	} else if e := new(engine.Error); !errors.As(err, &e) || e.Code != protocol.CodeSessionFull {
		t.Fatalf("join of a full session: %v", err)
	}
}

// A join refused by its creation check creates nothing, and the same
// check is not asked when the session exists.
func TestMayCreateGuardsOnlyCreation(t *testing.T) {
	f := newFixture(t)
	refuse := func() error { return &engine.Error{Code: protocol.CodeRateLimited, Message: "too many new sessions"} }
	if _, err := f.e.Join("a", engine.JoinRequest{SessionID: "new", MayCreate: refuse}); err == nil {
		t.Fatal("a refused creation created the session")
	}
	if _, ok := f.e.Session("new"); ok {
		t.Fatal("the session exists after a refused creation")
	}
	f.join("b", "old")
	if _, err := f.e.Join("c", engine.JoinRequest{SessionID: "old", MayCreate: refuse}); err != nil {
		t.Fatalf("joining an existing session asked the creation check: %v", err)
	}
}

// Bidirectional overrides and isolates are stripped from names, so a
// member cannot make its name read as another's.
func TestBidiControlsStrippedFromNames(t *testing.T) {
	f := newFixture(t)
	st, err := f.e.Join("a", engine.JoinRequest{SessionID: "band", DisplayName: "Ann\u202Eexe.gnp\u2066x\u2069\u200F"})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Members[0].DisplayName; got != "Annexe.gnpx" {
		t.Fatalf("displayName %q, want the bidi controls stripped", got)
	}
}
