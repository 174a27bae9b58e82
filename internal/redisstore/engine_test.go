package redisstore_test

import (
	"slices"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/store"
)

func engineConfig() engine.Config {
	return engine.Config{LeaderGrace: 300 * time.Millisecond, RecoveryWindow: 1500 * time.Millisecond}
}

// The engine's multi-instance behaviour (ordered delivery to members on
// two instances, stale leaders refused, concurrent claims, conflicting
// commands) is tested in internal/engine over the in-process store; the
// store's side of it by the contract suite (store_test.go). What is left
// here needs Redis itself: presence heartbeats, and the reaping of an
// instance that stopped answering.

// An instance that dies without a word: the survivors notice its silence,
// detach its members (memberCount unchanged, connected false), hand the
// leadership on after the grace period, and remove the members after the
// recovery window.
func TestDeadInstanceMembersAreDetachedThenRemoved(t *testing.T) {
	url, pfx := sharedURL(t), prefix(t)
	a := newInstance(t, open(t, url, pfx, "A"), engineConfig())
	brs := open(t, url, pfx, "B")
	b := newInstance(t, brs, engineConfig())
	if _, err := b.eng.Join("lead", engine.JoinRequest{SessionID: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.eng.Join("follow", engine.JoinRequest{SessionID: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.eng.Play("lead", "s1", 0); err != nil {
		t.Fatal(err)
	}
	_ = brs.Close() // B is gone: no heartbeat, no goodbye
	died := time.Now()
	member := func(st engine.State, id string) (engine.Member, bool) {
		i := slices.IndexFunc(st.Members, func(m engine.Member) bool { return m.SocketID == id })
		if i < 0 {
			return engine.Member{}, false
		}
		return st.Members[i], true
	}
	eventually(t, 3*time.Second, "B's member detached", func() bool {
		st, _ := a.eng.Session("s1")
		m, ok := member(st, "lead")
		return ok && !m.Connected
	})
	st, _ := a.eng.Session("s1")
	// The detached leader is still a member (it may recover) but no longer
	// counted: memberCount is of connected members.
	if leaderOf(st) != "lead" || st.MemberCount != 1 || len(st.Members) != 2 || !st.IsPlaying {
		t.Fatalf("right after detaching: leader %q, memberCount %d, members %d, playing %v; want lead, 1, 2, true", leaderOf(st), st.MemberCount, len(st.Members), st.IsPlaying)
	}
	eventually(t, 3*time.Second, "leadership handed on after the grace period", func() bool {
		st, _ := a.eng.Session("s1")
		return leaderOf(st) == "follow"
	})
	if waited := time.Since(died); waited < engineConfig().LeaderGrace {
		t.Fatalf("leadership moved %v after the death, before the grace period", waited)
	}
	eventually(t, 4*time.Second, "B's member removed after the recovery window", func() bool {
		st, _ := a.eng.Session("s1")
		_, ok := member(st, "lead")
		return !ok && st.MemberCount == 1
	})
	if rec := stored(t, a.rs, "s1"); len(rec.Members) != 1 || rec.Members[0].SocketID != "follow" {
		t.Fatalf("stored members %+v", rec.Members)
	}
}

// A leader whose instance died resumes on another instance within the
// grace period: it keeps the leadership, now stamped on its new instance,
// and the survivors' reaping does not detach it again.
func TestLeaderRecoversOnAnotherInstance(t *testing.T) {
	url, pfx := sharedURL(t), prefix(t)
	a := newInstance(t, open(t, url, pfx, "A"), engine.Config{LeaderGrace: 2 * time.Second, RecoveryWindow: 5 * time.Second})
	brs := open(t, url, pfx, "B")
	b := newInstance(t, brs, engineConfig())
	if _, err := b.eng.Join("lead", engine.JoinRequest{SessionID: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.eng.Join("follow", engine.JoinRequest{SessionID: "s1"}); err != nil {
		t.Fatal(err)
	}
	_ = brs.Close()
	a.eng.Attach("lead", "s1") // the socket recovered on A
	st, _ := a.eng.Session("s1")
	if leaderOf(st) != "lead" {
		t.Fatalf("after recovering on A the leader is %q", leaderOf(st))
	}
	if _, err := a.eng.Seek("lead", "s1", 1234); err != nil {
		t.Fatalf("the recovered leader cannot lead: %v", err)
	}
	// Past B's reaping and the grace period: still the leader, connected.
	time.Sleep(2500 * time.Millisecond)
	st, _ = a.eng.Session("s1")
	rec := stored(t, a.rs, "s1")
	i := slices.IndexFunc(rec.Members, func(m store.Member) bool { return m.SocketID == "lead" })
	if leaderOf(st) != "lead" || i < 0 || !rec.Members[i].Connected || rec.Members[i].Instance != "A" {
		t.Fatalf("leader %q, stored members %+v", leaderOf(st), rec.Members)
	}
}
