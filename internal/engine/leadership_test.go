package engine_test

import (
	"slices"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/engine/enginetest"
	"github.com/bandsync/bandsync/internal/protocol"
)

func TestFirstMemberLeadsOthersFollow(t *testing.T) {
	f := newFixture(t)
	a := f.join("a", "s1")
	if leaderOf(a) != "a" || roleOf(t, a, "a") != engine.RoleLeader || a.LeaderTerm != 1 {
		t.Fatalf("first member: leader %q role %q term %d; want a, leader, 1", leaderOf(a), roleOf(t, a, "a"), a.LeaderTerm)
	}
	b := f.join("b", "s1") // asks for nothing: follows
	if leaderOf(b) != "a" || roleOf(t, b, "b") != engine.RoleFollower || b.LeaderTerm != 1 {
		t.Fatalf("second member: leader %q, b role %q, term %d", leaderOf(b), roleOf(t, b, "b"), b.LeaderTerm)
	}
	if b.MemberCount != 2 || len(b.Members) != 2 || b.Message != "name-a is leading" {
		t.Fatalf("memberCount %d, members %d, message %q; want 2, 2, a leading", b.MemberCount, len(b.Members), b.Message)
	}
}

// The mobile app joins with only a sessionId, so the first phone to open it
// leads by default; the band leader's "Leader" tap (set_role leader) must
// then take the lead, and a second claim after that is refused.
func TestDefaultedLeadYieldsToMemberWhoAsks(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	f.join("b", "s1")
	f.out.Reset()
	st := ok(t)(f.e.SetRole("b", "s1", engine.RoleLeader))
	if leaderOf(st) != "b" || roleOf(t, st, "a") != engine.RoleFollower || st.LeaderTerm != 2 || st.Message != "Leader connected" {
		t.Fatalf("claim over a defaulted lead: leader %q, a %q, term %d, message %q", leaderOf(st), roleOf(t, st, "a"), st.LeaderTerm, st.Message)
	}
	rc := lastPayload[engine.RoleChanged](t, f.out, protocol.EventRoleChanged)
	if rc.SocketID != "b" || rc.Reason != engine.ReasonClaimed || rc.PreviousLeader == nil || *rc.PreviousLeader != "a" {
		t.Fatalf("role_changed = %+v", rc)
	}
	v := st.Version
	_, err := f.e.SetRole("a", "s1", engine.RoleLeader)
	wantCode(t, err, protocol.CodeNotLeader)
	st = f.join("c", "s1", engine.RoleLeader)
	if leaderOf(st) != "b" || st.Version != v+1 { // c joined, as a follower
		t.Fatalf("claimed lead was taken: leader %q version %d -> %d", leaderOf(st), v, st.Version)
	}

	// A join that asks to lead takes a defaulted lead too.
	f.join("x", "s2")
	st = f.join("y", "s2", engine.RoleLeader)
	if leaderOf(st) != "y" || st.Message != "name-y is leading" {
		t.Fatalf("join as leader over a defaulted lead: leader %q message %q", leaderOf(st), st.Message)
	}
	// A defaulted leader that asks confirms its own lead: now protected.
	f.join("p", "s3")
	f.join("q", "s3")
	st = ok(t)(f.e.SetRole("p", "s3", engine.RoleLeader))
	if leaderOf(st) != "p" || st.Message != "Leader connected" {
		t.Fatalf("confirming a defaulted lead: leader %q message %q", leaderOf(st), st.Message)
	}
	_, err = f.e.SetRole("q", "s3", engine.RoleLeader)
	wantCode(t, err, protocol.CodeNotLeader)
}

func TestJoinBroadcastsAndJoinerSnapshot(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	f.out.Reset()
	f.join("b", "s1")
	want := []string{
		"to_session:user_joined", "to_session:room_stats", "to_session:snapshot",
		"join_room:b", "to_member:b:snapshot", "to_member:b:room_stats", "to_member:b:user_joined",
	}
	if got := f.out.Names(); !slices.Equal(got, want) {
		t.Fatalf("join sent %v, want %v", got, want)
	}
	uj := lastPayload[engine.UserJoined](t, f.out, protocol.EventUserJoined)
	if uj.Member.SocketID != "b" || uj.Member.DisplayName != "name-b" || !uj.Member.Connected || uj.MemberCount != 2 {
		t.Fatalf("user_joined = %+v", uj)
	}
	rs := lastPayload[engine.RoomStats](t, f.out, protocol.EventRoomStats)
	if rs.MemberCount != 2 || rs.Leader == nil || *rs.Leader != "a" || rs.SessionID != "s1" {
		t.Fatalf("room_stats = %+v", rs)
	}
}

func TestIdempotentJoinOnlyResendsSnapshot(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	before := f.state("s1")
	f.out.Reset()
	again, err := f.e.Join("a", engine.JoinRequest{SessionID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.out.Names(), []string{"to_member:a:snapshot", "to_member:a:room_stats"}; !slices.Equal(got, want) {
		t.Fatalf("second join sent %v, want %v", got, want)
	}
	if again.Version != before.Version || again.MemberCount != 1 {
		t.Fatalf("second join: version %d -> %d, members %d", before.Version, again.Version, again.MemberCount)
	}
}

func TestSetRoleLeadershipRules(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1", engine.RoleLeader)
	f.join("b", "s1")
	v := f.state("s1").Version

	_, err := f.e.SetRole("b", "s1", engine.RoleLeader)
	wantCode(t, err, protocol.CodeNotLeader)
	if st := f.state("s1"); leaderOf(st) != "a" || st.Version != v {
		t.Fatalf("refused takeover changed the session: leader %q version %d->%d", leaderOf(st), v, st.Version)
	}

	// Asking for the role one has is a no-op, answered with a snapshot.
	f.out.Reset()
	st := ok(t)(f.e.SetRole("b", "s1", engine.RoleFollower))
	if st.Version != v {
		t.Fatalf("follower asking for follower bumped version %d -> %d", v, st.Version)
	}
	ok(t)(f.e.SetRole("a", "s1", engine.RoleLeader))
	if got, want := f.out.Names(), []string{"to_member:b:snapshot", "to_member:a:snapshot"}; !slices.Equal(got, want) {
		t.Fatalf("no-op set_role sent %v, want %v", got, want)
	}

	f.out.Reset()
	st = ok(t)(f.e.SetRole("a", "s1", engine.RoleFollower))
	if leaderOf(st) != "" || roleOf(t, st, "a") != engine.RoleFollower || st.LeaderTerm != 2 || st.Version != v+1 {
		t.Fatalf("step down: leader %q, a %q, term %d, version %d", leaderOf(st), roleOf(t, st, "a"), st.LeaderTerm, st.Version)
	}
	rc := lastPayload[engine.RoleChanged](t, f.out, protocol.EventRoleChanged)
	if rc.SocketID != "a" || rc.Role != engine.RoleFollower || rc.Reason != engine.ReasonSteppedDown || rc.PreviousLeader == nil || *rc.PreviousLeader != "a" {
		t.Fatalf("role_changed on step down = %+v", rc)
	}
	if got := f.out.Names(); !slices.Equal(got, []string{"to_session:role_changed", "to_session:snapshot"}) {
		t.Fatalf("step down sent %v", got)
	}

	st = ok(t)(f.e.SetRole("b", "s1", engine.RoleLeader))
	if leaderOf(st) != "b" || roleOf(t, st, "b") != engine.RoleLeader || st.LeaderTerm != 3 {
		t.Fatalf("vacant claim: leader %q term %d", leaderOf(st), st.LeaderTerm)
	}
	rc = lastPayload[engine.RoleChanged](t, f.out, protocol.EventRoleChanged)
	if rc.SocketID != "b" || rc.Role != engine.RoleLeader || rc.Reason != engine.ReasonClaimed || rc.PreviousLeader != nil {
		t.Fatalf("role_changed on claim = %+v", rc)
	}
}

func TestJoinAsLeaderClaimsVacantLeadership(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	f.join("b", "s1")
	ok(t)(f.e.SetRole("a", "s1", engine.RoleFollower))
	st := f.join("c", "s1") // no role asked: stays follower, a is connected
	if leaderOf(st) != "" {
		t.Fatalf("a plain join took vacant leadership in a session with connected members: %q", leaderOf(st))
	}
	st = f.join("d", "s1", engine.RoleLeader)
	if leaderOf(st) != "d" {
		t.Fatalf("join as leader with vacant leadership: leader %q, want d", leaderOf(st))
	}
}

func TestOpenLeadershipTakeover(t *testing.T) {
	f := newFixture(t, func(c *engine.Config) { c.OpenLeadership = true })
	f.join("a", "s1", engine.RoleLeader)
	f.join("b", "s1")
	st := ok(t)(f.e.SetRole("b", "s1", engine.RoleLeader))
	if leaderOf(st) != "b" || roleOf(t, st, "a") != engine.RoleFollower || st.LeaderTerm != 2 {
		t.Fatalf("takeover: leader %q, a %q, term %d", leaderOf(st), roleOf(t, st, "a"), st.LeaderTerm)
	}
	rc := lastPayload[engine.RoleChanged](t, f.out, protocol.EventRoleChanged)
	if rc.Reason != engine.ReasonTakeover || rc.PreviousLeader == nil || *rc.PreviousLeader != "a" {
		t.Fatalf("role_changed = %+v", rc)
	}
	st = f.join("c", "s1", engine.RoleLeader)
	if leaderOf(st) != "c" || st.LeaderTerm != 3 {
		t.Fatalf("join as leader under open policy: leader %q term %d", leaderOf(st), st.LeaderTerm)
	}
}

func TestLeaderKeepsLeadershipAndPlaybackDuringGrace(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1", engine.RoleLeader)
	f.clk.Advance(time.Second)
	f.join("b", "s1")
	f.clk.Advance(time.Second)
	f.join("c", "s1")
	ok(t)(f.e.Play("a", "s1", 0))
	playAt := f.clk.Now()

	f.e.Detach("a")
	f.clk.Advance(5*time.Second - time.Millisecond)
	st := f.state("s1")
	if leaderOf(st) != "a" || !st.IsPlaying || st.PositionMs != 4999 {
		t.Fatalf("during grace: leader %q playing %v position %v; want a, true, 4999", leaderOf(st), st.IsPlaying, st.PositionMs)
	}
	if roleOf(t, st, "a") != engine.RoleLeader || st.Members[0].Connected {
		t.Fatalf("during grace a should be leader and disconnected: %+v", st.Members[0])
	}
	_, err := f.e.SetRole("b", "s1", engine.RoleLeader)
	wantCode(t, err, protocol.CodeNotLeader)
	f.out.Reset()
	f.e.Tick(f.clk.Now())
	if ticks := f.out.Events(protocol.EventScrollTick); len(ticks) != 1 {
		t.Fatalf("ticks during grace = %d, want 1", len(ticks))
	}

	v, term := st.Version, st.LeaderTerm
	f.out.Reset()
	f.clk.Advance(time.Millisecond)
	st = f.state("s1")
	if leaderOf(st) != "b" || roleOf(t, st, "b") != engine.RoleLeader || roleOf(t, st, "a") != engine.RoleFollower {
		t.Fatalf("after grace leader = %q, want most senior connected b", leaderOf(st))
	}
	if st.Version != v+1 || st.LeaderTerm != term+1 || !st.IsPlaying {
		t.Fatalf("after grace: version %d->%d term %d->%d playing %v", v, st.Version, term, st.LeaderTerm, st.IsPlaying)
	}
	if got := f.out.Names(); !slices.Equal(got, []string{"to_session:role_changed", "to_session:snapshot"}) {
		t.Fatalf("grace expiry sent %v", got)
	}
	rc := lastPayload[engine.RoleChanged](t, f.out, protocol.EventRoleChanged)
	if rc.SocketID != "b" || rc.Role != engine.RoleLeader || rc.Reason != engine.ReasonLeaderDisconnected ||
		rc.PreviousLeader == nil || *rc.PreviousLeader != "a" || rc.Timestamp != ms(playAt.Add(5*time.Second)) {
		t.Fatalf("role_changed = %+v", rc)
	}
}

func TestGraceSkipsDetachedMembersAndVacatesWhenNobodyIsConnected(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	f.clk.Advance(time.Second)
	f.join("b", "s1")
	f.clk.Advance(time.Second)
	f.join("c", "s1")
	f.e.Detach("b")
	f.e.Detach("a")
	f.clk.Advance(5 * time.Second)
	if l := leaderOf(f.state("s1")); l != "c" {
		t.Fatalf("leader after grace = %q, want c (b is more senior but detached)", l)
	}

	g := newFixture(t)
	g.join("a", "s2")
	g.join("b", "s2")
	g.e.Detach("b")
	g.e.Detach("a")
	g.out.Reset()
	g.clk.Advance(5 * time.Second)
	st := g.state("s2")
	if leaderOf(st) != "" || roleOf(t, st, "a") != engine.RoleFollower {
		t.Fatalf("no connected member: leader %q, want vacant", leaderOf(st))
	}
	rc := lastPayload[engine.RoleChanged](t, g.out, protocol.EventRoleChanged)
	if rc.SocketID != "a" || rc.Role != engine.RoleFollower || rc.Reason != engine.ReasonLeaderDisconnected {
		t.Fatalf("role_changed on vacancy = %+v", rc)
	}
}

func TestReattachWithinGraceKeepsLeadership(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	f.join("b", "s1")
	f.e.Detach("a")
	f.clk.Advance(4 * time.Second)
	f.e.Attach("a")
	f.clk.Advance(time.Minute)
	st := f.state("s1")
	if leaderOf(st) != "a" || !st.Members[0].Connected || st.LeaderTerm != 1 {
		t.Fatalf("after re-attach: leader %q connected %v term %d", leaderOf(st), st.Members[0].Connected, st.LeaderTerm)
	}
	if n := len(f.out.Events(protocol.EventRoleChanged)); n != 0 {
		t.Fatalf("%d role_changed sent for a leader that came back in time", n)
	}
	// A re-attached leader is not removed when its old recovery window ends.
	f.clk.Advance(3 * time.Minute)
	if st := f.state("s1"); st.MemberCount != 2 {
		t.Fatalf("memberCount = %d after re-attach, want 2", st.MemberCount)
	}
}

func TestDetachedMemberRemovedAfterRecoveryWindow(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	f.join("b", "s1")
	f.e.Detach("b")
	f.clk.Advance(2*time.Minute - time.Millisecond)
	st := f.state("s1")
	// b is still a member (it may recover) but not counted: the count is
	// of connected members, what the mobile app shows.
	if st.MemberCount != 1 || len(st.Members) != 2 || st.Members[1].Connected {
		t.Fatalf("within window: memberCount %d, members %d, b connected %v", st.MemberCount, len(st.Members), st.Members[1].Connected)
	}
	f.out.Reset()
	f.clk.Advance(time.Millisecond)
	st = f.state("s1")
	if st.MemberCount != 1 || st.Members[0].SocketID != "a" {
		t.Fatalf("after window members = %+v, want only a", st.Members)
	}
	want := []string{"leave_room:b", "to_session:user_left", "to_session:room_stats", "to_session:snapshot"}
	if got := f.out.Names(); !slices.Equal(got, want) {
		t.Fatalf("recovery expiry sent %v, want %v", got, want)
	}
	ul := lastPayload[engine.UserLeft](t, f.out, protocol.EventUserLeft)
	if ul.SocketID != "b" || ul.MemberCount != 1 || ul.NewLeader == nil || *ul.NewLeader != "a" {
		t.Fatalf("user_left = %+v", ul)
	}
	if s := f.e.Stats(); s.Members != 1 {
		t.Fatalf("Stats.Members = %d, want 1", s.Members)
	}
	f.e.Attach("b") // too late: nothing happens
	if st2 := f.state("s1"); st2.Version != st.Version {
		t.Fatal("Attach after removal changed the session")
	}
}

func TestLeaderLeavingHandsOverAtOnce(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	f.clk.Advance(time.Second)
	f.join("b", "s1")
	f.clk.Advance(time.Second)
	f.join("c", "s1")
	f.e.Detach("b")
	f.out.Reset()
	if err := f.e.Leave("a", "s1"); err != nil {
		t.Fatal(err)
	}
	st := f.state("s1")
	if leaderOf(st) != "c" || st.LeaderTerm != 2 {
		t.Fatalf("after leader left: leader %q term %d; want c (b detached), 2", leaderOf(st), st.LeaderTerm)
	}
	want := []string{"leave_room:a", "to_session:user_left", "to_session:role_changed", "to_session:room_stats", "to_session:snapshot"}
	if got := f.out.Names(); !slices.Equal(got, want) {
		t.Fatalf("leave sent %v, want %v", got, want)
	}
	rc := lastPayload[engine.RoleChanged](t, f.out, protocol.EventRoleChanged)
	if rc.SocketID != "c" || rc.Reason != engine.ReasonLeaderLeft || *rc.PreviousLeader != "a" {
		t.Fatalf("role_changed = %+v", rc)
	}
	ul := lastPayload[engine.UserLeft](t, f.out, protocol.EventUserLeft)
	if ul.NewLeader == nil || *ul.NewLeader != "c" || ul.MemberCount != 1 { // b is detached
		t.Fatalf("user_left = %+v", ul)
	}

	f.e.Remove("c")
	if st := f.state("s1"); leaderOf(st) != "" {
		t.Fatalf("only a detached member left, leader = %q, want vacant", leaderOf(st))
	}
	if err := f.e.Leave("c", "s1"); err == nil {
		t.Fatal("Leave of a removed member succeeded")
	} else {
		wantCode(t, err, protocol.CodeNotInSession)
	}
}

func TestJoiningAnotherSessionLeavesThePrevious(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	f.join("b", "s1")
	f.out.Reset()
	f.join("a", "s2")
	if st := f.state("s1"); st.MemberCount != 1 || leaderOf(st) != "b" {
		t.Fatalf("s1 after a moved: members %d leader %q", st.MemberCount, leaderOf(st))
	}
	if st := f.state("s2"); leaderOf(st) != "a" {
		t.Fatalf("s2 leader = %q, want a", leaderOf(st))
	}
	calls := f.out.Calls()
	if calls[0].Kind != enginetest.KindLeaveRoom || calls[0].Session != "s1" {
		t.Fatalf("first call = %+v, want LeaveRoom of s1 before joining s2", calls[0])
	}
	if _, err := f.e.Play("a", "s1", 0); err == nil {
		t.Fatal("a still commands s1 after moving to s2")
	} else {
		wantCode(t, err, protocol.CodeNotInSession)
	}
	if s := f.e.Stats(); s.Members != 2 || s.Sessions != 2 {
		t.Fatalf("Stats = %+v, want 2 members in 2 sessions", s)
	}
}
