package engine_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/engine/enginetest"
	"github.com/bandsync/bandsync/internal/protocol"
)

func TestTransferLeadership(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s")
	f.join("b", "s")
	f.join("c", "s")
	f.out.Reset()
	st := ok(t)(f.e.TransferLeadership("a", "s", "c"))
	if leaderOf(st) != "c" || roleOf(t, st, "a") != engine.RoleFollower || roleOf(t, st, "c") != engine.RoleLeader {
		t.Fatalf("after handover: leader %q", leaderOf(st))
	}
	rc := lastPayload[engine.RoleChanged](t, f.out, protocol.EventRoleChanged)
	if rc.SocketID != "c" || rc.Reason != engine.ReasonHandover || rc.PreviousLeader == nil || *rc.PreviousLeader != "a" {
		t.Fatalf("role_changed = %+v", rc)
	}
	wantCode(t, second(f.e.Play("a", "s", 0)), protocol.CodeNotLeader)
	wantCode(t, second(f.e.TransferLeadership("a", "s", "b")), protocol.CodeNotLeader)
	wantCode(t, second(f.e.TransferLeadership("c", "s", "nobody")), protocol.CodeInvalidPayload)
	f.e.Detach("b")
	v := f.state("s").Version
	wantCode(t, second(f.e.TransferLeadership("c", "s", "b")), protocol.CodeInvalidPayload)
	if f.state("s").Version != v {
		t.Fatal("a refused handover changed the session")
	}
}

func TestResumeInsideGraceKeepsTheLeadQuietly(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s")
	f.clk.Advance(time.Second)
	f.join("b", "s")
	token := f.e.MemberToken("a", "s")
	if len(token) < 22 || token == f.e.MemberToken("b", "s") {
		t.Fatalf("tokens %q and %q", token, f.e.MemberToken("b", "s"))
	}
	ok(t)(f.e.Play("a", "s", 0))
	f.e.Detach("a")
	f.clk.Advance(4 * time.Second)
	f.out.Reset()
	st, err := f.e.Join("a2", engine.JoinRequest{SessionID: "s", MemberToken: token})
	if err != nil {
		t.Fatal(err)
	}
	if leaderOf(st) != "a2" || !st.IsPlaying || len(st.Members) != 2 || st.Members[0].DisplayName != "name-a" || !st.Members[0].Connected {
		t.Fatalf("after resume: leader %q playing %v members %+v", leaderOf(st), st.IsPlaying, st.Members)
	}
	if f.e.MemberToken("a2", "s") != token {
		t.Fatal("the resumed member's token changed")
	}
	f.clk.Advance(10 * time.Second) // past the old socket's grace period
	if got := f.out.Events(protocol.EventRoleChanged); len(got) != 0 {
		t.Fatalf("role_changed sent: %+v", got[0].Payload)
	}
	if st := f.state("s"); leaderOf(st) != "a2" {
		t.Fatalf("leader after the grace period: %q", leaderOf(st))
	}
	ok(t)(f.e.Pause("a2", "s"))
	// The old socket's late disconnect changes nothing.
	v := f.state("s").Version
	f.e.Remove("a")
	if f.state("s").Version != v {
		t.Fatal("the replaced socket's disconnect changed the session")
	}
}

func TestResumeReplacesAConnectedSocket(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s")
	f.join("b", "s")
	f.out.Reset()
	if _, err := f.e.Join("a2", engine.JoinRequest{SessionID: "s", MemberToken: f.e.MemberToken("a", "s")}); err != nil {
		t.Fatal(err)
	}
	left := slices.ContainsFunc(f.out.Calls(), func(c enginetest.Call) bool {
		return c.Kind == enginetest.KindLeaveRoom && c.Member == "a" && c.Session == "s"
	})
	if !left {
		t.Fatalf("the old socket did not leave the room: %v", f.out.Names())
	}
	wantCode(t, second(f.e.Play("a", "s", 0)), protocol.CodeNotInSession)
	ok(t)(f.e.Play("a2", "s", 0))
}

func TestResumeAfterGraceAndWrongTokens(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s")
	f.join("b", "s")
	token := f.e.MemberToken("a", "s")
	f.e.Detach("a")
	f.clk.Advance(6 * time.Second)
	st, err := f.e.Join("a2", engine.JoinRequest{SessionID: "s", MemberToken: token})
	if err != nil {
		t.Fatal(err)
	}
	if leaderOf(st) != "b" || roleOf(t, st, "a2") != engine.RoleFollower || len(st.Members) != 2 {
		t.Fatalf("late resume: leader %q members %+v", leaderOf(st), st.Members)
	}
	// A wrong token, or one of a member gone for good, joins as a new member.
	st, err = f.e.Join("x", engine.JoinRequest{SessionID: "s", MemberToken: token + "x"})
	if err != nil || len(st.Members) != 3 {
		t.Fatalf("wrong token: %v, %d members", err, len(st.Members))
	}
	f.e.Remove("a2")
	st, err = f.e.Join("y", engine.JoinRequest{SessionID: "s", MemberToken: token})
	if err != nil || len(st.Members) != 3 || roleOf(t, st, "y") != engine.RoleFollower {
		t.Fatalf("expired token: %v, %+v", err, st.Members)
	}
	b, _ := json.Marshal(st)
	for _, m := range []string{"b", "x", "y"} {
		if tok := f.e.MemberToken(m, "s"); tok == "" || strings.Contains(string(b), tok) {
			t.Fatalf("token of %s missing or in the snapshot", m)
		}
	}
}
