package engine_test

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/protocol"
)

func TestInvalidInputChangesNothing(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	f.join("b", "s1")
	nan, inf := math.NaN(), math.Inf(1)
	cases := []struct {
		name string
		code string
		do   func() error
	}{
		{"empty session id", protocol.CodeInvalidSessionID, func() error { _, err := f.e.Join("c", engine.JoinRequest{SessionID: ""}); return err }},
		{"65-char session id", protocol.CodeInvalidSessionID, func() error {
			_, err := f.e.Join("c", engine.JoinRequest{SessionID: strings.Repeat("x", 65)})
			return err
		}},
		{"space in session id", protocol.CodeInvalidSessionID, func() error { _, err := f.e.Join("c", engine.JoinRequest{SessionID: "s 1"}); return err }},
		{"non-ascii session id", protocol.CodeInvalidSessionID, func() error { _, err := f.e.Join("c", engine.JoinRequest{SessionID: "sé"}); return err }},
		{"slash in session id (tempo)", protocol.CodeInvalidSessionID, func() error { _, err := f.e.SetTempo("a", "s1/..", 100); return err }},
		{"51-char display name", protocol.CodeInvalidPayload, func() error {
			_, err := f.e.Join("c", engine.JoinRequest{SessionID: "s1", DisplayName: strings.Repeat("é", 51)})
			return err
		}},
		{"join role", protocol.CodeInvalidPayload, func() error {
			_, err := f.e.Join("c", engine.JoinRequest{SessionID: "s1", Role: "admin"})
			return err
		}},
		{"set_role role", protocol.CodeInvalidPayload, func() error { _, err := f.e.SetRole("b", "s1", "boss"); return err }},
		{"set_role empty role", protocol.CodeInvalidPayload, func() error { _, err := f.e.SetRole("b", "s1", ""); return err }},
		{"tempo 0.99", protocol.CodeInvalidPayload, func() error { _, err := f.e.SetTempo("a", "s1", 0.99); return err }},
		{"tempo 0", protocol.CodeInvalidPayload, func() error { _, err := f.e.SetTempo("a", "s1", 0); return err }},
		{"tempo 500", protocol.CodeInvalidPayload, func() error { _, err := f.e.SetTempo("a", "s1", 500); return err }},
		{"tempo NaN", protocol.CodeInvalidPayload, func() error { _, err := f.e.SetTempo("a", "s1", nan); return err }},
		{"tempo +Inf", protocol.CodeInvalidPayload, func() error { _, err := f.e.SetTempo("a", "s1", inf); return err }},
		{"position -1", protocol.CodeInvalidPayload, func() error { _, err := f.e.Seek("a", "s1", -1); return err }},
		{"position 24h+1", protocol.CodeInvalidPayload, func() error { _, err := f.e.Seek("a", "s1", 86_400_001); return err }},
		{"position NaN", protocol.CodeInvalidPayload, func() error { _, err := f.e.Seek("a", "s1", nan); return err }},
		{"position -Inf", protocol.CodeInvalidPayload, func() error { _, err := f.e.Seek("a", "s1", math.Inf(-1)); return err }},
		{"delay -1", protocol.CodeInvalidPayload, func() error { _, err := f.e.Play("a", "s1", -1); return err }},
		{"delay 5001", protocol.CodeInvalidPayload, func() error { _, err := f.e.Play("a", "s1", 5001); return err }},
		{"delay NaN", protocol.CodeInvalidPayload, func() error { _, err := f.e.Play("a", "s1", nan); return err }},
		{"message 501 chars", protocol.CodeInvalidPayload, func() error {
			_, err := f.e.UpdateMessage("a", "s1", strings.Repeat("ü", 501))
			return err
		}},
		{"leave bad id", protocol.CodeInvalidSessionID, func() error { return f.e.Leave("a", "") }},
		{"sync bad id", protocol.CodeInvalidSessionID, func() error { _, err := f.e.SyncRequest("a", "bad id"); return err }},
		{"pause bad id", protocol.CodeInvalidSessionID, func() error { _, err := f.e.Pause("a", "bad id"); return err }},
		{"stop bad id", protocol.CodeInvalidSessionID, func() error { _, err := f.e.Stop("a", "bad id"); return err }},
	}
	before := f.state("s1")
	f.out.Reset()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantCode(t, c.do(), c.code)
			if st := f.state("s1"); st.Version != before.Version || st.MemberCount != 2 || st.Tempo != before.Tempo || st.IsPlaying {
				t.Fatalf("rejected command changed the session: version %d -> %d", before.Version, st.Version)
			}
			if calls := f.out.Calls(); len(calls) != 0 {
				t.Fatalf("rejected command sent %v", f.out.Names())
			}
		})
	}
	if s := f.e.Stats(); s.Sessions != 1 {
		t.Fatalf("rejected joins created sessions: %d", s.Sessions)
	}
}

func TestErrorMessagesSayWhatIsAllowed(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	_, err := f.e.SetTempo("a", "s1", 500)
	if want := "tempo must be a number from 1 to 300, got 500"; err.(*engine.Error).Message != want {
		t.Fatalf("message = %q, want %q", err.(*engine.Error).Message, want)
	}
	b, _ := json.Marshal(err)
	if string(b) != `{"code":"INVALID_PAYLOAD","message":"tempo must be a number from 1 to 300, got 500"}` {
		t.Fatalf("error JSON = %s", b)
	}
}

func TestBoundaryValuesAreAccepted(t *testing.T) {
	f := newFixture(t)
	f.join("a", strings.Repeat("A-z_9", 12)+"abcd") // 64 chars
	id := strings.Repeat("A-z_9", 12) + "abcd"
	ok(t)(f.e.SetTempo("a", id, 20))
	ok(t)(f.e.SetTempo("a", id, 300))
	ok(t)(f.e.Seek("a", id, 86_400_000))
	ok(t)(f.e.Seek("a", id, 0))
	ok(t)(f.e.Play("a", id, 5000))
	st := ok(t)(f.e.UpdateMessage("a", id, strings.Repeat("ü", 500)+"\x00\n\x1b"))
	if st.Message != strings.Repeat("ü", 500) {
		t.Fatal("control characters were not stripped from the message")
	}
}

func TestDisplayNameIsCleaned(t *testing.T) {
	f := newFixture(t)
	st, err := f.e.Join("a", engine.JoinRequest{SessionID: "s1", DisplayName: "  \tDrum\x07mer \n"})
	if err != nil {
		t.Fatal(err)
	}
	if name := st.Members[0].DisplayName; name != "Drummer" {
		t.Fatalf("displayName = %q, want %q", name, "Drummer")
	}
	st, _ = f.e.Join("b", engine.JoinRequest{SessionID: "s1", DisplayName: " \x01 "})
	if name := st.Members[1].DisplayName; name != "Guest" {
		t.Fatalf("blank displayName = %q, want Guest", name)
	}
}

func TestNonLeaderCommandsChangeNothing(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	f.join("b", "s1")
	before := f.state("s1")
	f.out.Reset()
	for name, do := range map[string]func() error{
		"play":      func() error { _, err := f.e.Play("b", "s1", 0); return err },
		"pause":     func() error { _, err := f.e.Pause("b", "s1"); return err },
		"seek":      func() error { _, err := f.e.Seek("b", "s1", 1000); return err },
		"set_tempo": func() error { _, err := f.e.SetTempo("b", "s1", 100); return err },
		"stop":      func() error { _, err := f.e.Stop("b", "s1"); return err },
	} {
		wantCode(t, do(), protocol.CodeNotLeader)
		if st := f.state("s1"); st.Version != before.Version || st.IsPlaying || st.Tempo != 120 || st.PositionMs != 0 {
			t.Fatalf("follower %s changed the session", name)
		}
	}
	for name, do := range map[string]func() error{
		"play (stranger)":    func() error { _, err := f.e.Play("x", "s1", 0); return err },
		"message (stranger)": func() error { _, err := f.e.UpdateMessage("x", "s1", "hi"); return err },
		"set_role (stranger)": func() error {
			_, err := f.e.SetRole("x", "s1", engine.RoleLeader)
			return err
		},
		"play (no such session)":  func() error { _, err := f.e.Play("a", "nope", 0); return err },
		"leave (no such session)": func() error { return f.e.Leave("a", "nope") },
	} {
		wantCode(t, do(), protocol.CodeNotInSession)
		if st := f.state("s1"); st.Version != before.Version {
			t.Fatalf("%s changed the session", name)
		}
	}
	if len(f.out.Calls()) != 0 {
		t.Fatalf("refused commands sent %v", f.out.Names())
	}

	// With leadership vacant nobody may drive the transport.
	ok(t)(f.e.SetRole("a", "s1", engine.RoleFollower))
	_, err := f.e.Play("a", "s1", 0)
	wantCode(t, err, protocol.CodeNotLeader)
}

func TestSessionFull(t *testing.T) {
	f := newFixture(t, func(c *engine.Config) { c.MaxMembers = 2; c.MaxSessions = 2 })
	f.join("a", "s1")
	f.join("b", "s1")
	v := f.state("s1").Version
	_, err := f.e.Join("c", engine.JoinRequest{SessionID: "s1"})
	wantCode(t, err, protocol.CodeSessionFull)
	if st := f.state("s1"); st.Version != v || st.MemberCount != 2 || st.Settings.MaxMembers != 2 {
		t.Fatalf("refused join changed the session (version %d -> %d)", v, st.Version)
	}
	// A member of a full session re-joining is still idempotent.
	f.join("b", "s1")

	f.join("c", "s2")
	_, err = f.e.Join("d", engine.JoinRequest{SessionID: "s3"})
	wantCode(t, err, protocol.CodeSessionFull)
	if !strings.Contains(err.Error(), "no room for new sessions") {
		t.Fatalf("server-full message = %q", err)
	}
	// Moving to a full session keeps the member where it was.
	_, err = f.e.Join("c", engine.JoinRequest{SessionID: "s1"})
	wantCode(t, err, protocol.CodeSessionFull)
	if st := f.state("s2"); st.MemberCount != 1 {
		t.Fatal("a refused move took the member out of its session")
	}
	if s := f.e.Stats(); s.Sessions != 2 {
		t.Fatalf("sessions = %d, want 2", s.Sessions)
	}
}

func TestSnapshotJSONShape(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	if err := f.e.Leave("a", "s1"); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(f.state("s1"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := []string{"sessionId", "message", "tempo", "tempoBpm", "isPlaying", "position", "positionMs",
		"leaderSocketId", "members", "settings", "memberCount", "createdAt", "lastActiveAt", "serverTimestamp",
		"version", "startsAt", "beat", "leaderTerm",
		"setlist", "songId", "timeSignature", "countInBars"} // docs/protocol.md, "Songs and setlists"
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Fatalf("snapshot keys = %v, want %v", keys, want)
	}
	if m["leaderSocketId"] != nil || m["startsAt"] != nil {
		t.Fatalf("vacant leader / not playing must be null: %s", b)
	}
	if members, ok := m["members"].([]any); !ok || len(members) != 0 {
		t.Fatalf("members of an empty session = %v, want []", m["members"])
	}
	if !strings.Contains(string(b), `"settings":{"maxMembers":50}`) {
		t.Fatalf("settings missing: %s", b)
	}

	f.join("b", "s1")
	b, _ = json.Marshal(f.state("s1").Members[0])
	if string(b) != `{"socketId":"b","displayName":"name-b","role":"leader","joinedAt":`+
		jsonNum(t0.UnixMilli())+`,"connected":true}` {
		t.Fatalf("member JSON = %s", b)
	}
}

func jsonNum(v int64) string { b, _ := json.Marshal(v); return string(b) }
