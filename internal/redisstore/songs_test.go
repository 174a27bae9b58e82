package redisstore_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/protocol"
)

const songChart = "{title: Lights}\n{tempo: 96}\n{time: 6/8}\n[Am]Lights come [D]on\n"

// Songs are stored with the session in Redis: a setlist built by a leader
// on one instance is the setlist of a member on another, charts included,
// and of an instance that starts later.
func TestSongsAreSharedThroughRedis(t *testing.T) {
	url, pfx := sharedURL(t), prefix(t)
	a := newInstance(t, open(t, url, pfx, "A"), engineConfig())
	b := newInstance(t, open(t, url, pfx, "B"), engineConfig())
	if _, err := a.eng.Join("lead", engine.JoinRequest{SessionID: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.eng.Join("f", engine.JoinRequest{SessionID: "s1"}); err != nil {
		t.Fatal(err)
	}
	song, _, err := a.eng.AddSong("lead", "s1", songChart)
	if err != nil {
		t.Fatal(err)
	}
	last, err := a.eng.SelectSong("lead", "s1", song.SongID)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "the follower on B got the selection", func() bool {
		v := b.out.snapshotVersions("f")
		return len(v) > 0 && v[len(v)-1] == last.Version
	})
	var changed []engine.SongChanged
	for _, d := range b.out.events("f") {
		if d.Event == protocol.EventSongChanged {
			var c engine.SongChanged
			_ = json.Unmarshal(d.Payload, &c)
			changed = append(changed, c)
		}
	}
	if len(changed) != 1 || changed[0].SongID != song.SongID || changed[0].TempoBpm != 96 || changed[0].TimeSignature.BeatsPerBar != 6 {
		t.Fatalf("song_changed on B: %+v", changed)
	}
	got, err := b.eng.GetSong("f", "s1", song.SongID)
	if err != nil || got.ChordPro != songChart {
		t.Fatalf("GetSong on B = %q, %v", got.ChordPro, err)
	}
	// A refusal decided on B against the stored state changes nothing.
	if _, err := b.eng.SelectSong("f", "s1", song.SongID); code(err) != protocol.CodeNotLeader {
		t.Fatalf("a follower's select_song: %v", err)
	}
	// An instance started later reads the songs from Redis.
	c := newInstance(t, open(t, url, pfx, "C"), engineConfig())
	st, err := c.eng.Join("late", engine.JoinRequest{SessionID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	if st.SongID == nil || *st.SongID != song.SongID || st.Tempo != 96 || st.TimeSignature != (engine.TimeSignature{BeatsPerBar: 6, BeatUnit: 8}) || len(st.Setlist) != 1 {
		t.Fatalf("the session on C: %+v tempo %v", st.SongState, st.Tempo)
	}
	if got, err := c.eng.GetSong("late", "s1", song.SongID); err != nil || got.ChordPro != songChart {
		t.Fatalf("GetSong on C = %q, %v", got.ChordPro, err)
	}
	// The record (written and published with every change) carries no
	// chart; the charts hash has it, one version per song, and drops what
	// the setlist no longer refers to.
	if rec := stored(t, a.rs, "s1"); len(rec.Songs) != 1 || rec.Songs[0].ChordPro != "" || rec.Songs[0].Title != "Lights" {
		t.Fatalf("stored songs: %+v", rec.Songs)
	}
	ctx := context.Background()
	if text, found, err := a.rs.LoadChart(ctx, "s1", song.SongID, 1); err != nil || !found || text != songChart {
		t.Fatalf("LoadChart = %q %v %v", text, found, err)
	}
	if _, err := a.eng.UpdateSong("lead", "s1", song.SongID, "{title: Lights 2}"); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := a.rs.LoadChart(ctx, "s1", song.SongID, 1); found {
		t.Fatal("the replaced version of the chart is still stored")
	}
	if got, err := c.eng.GetSong("late", "s1", song.SongID); err != nil || got.ChordPro != "{title: Lights 2}" || got.Version != 2 {
		t.Fatalf("GetSong on C after the update = %+v, %v", got, err)
	}
	if _, err := a.eng.RemoveSong("lead", "s1", song.SongID); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := a.rs.LoadChart(ctx, "s1", song.SongID, 2); found {
		t.Fatal("the removed song's chart is still stored")
	}
}

// A leader whose page reloads onto another instance takes its place back
// with its token: the new socket leads and nobody is told of a change.
func TestMemberTokenResumesOnAnotherInstance(t *testing.T) {
	url, pfx := sharedURL(t), prefix(t)
	cfg := engine.Config{LeaderGrace: 2 * time.Second, RecoveryWindow: 5 * time.Second}
	a := newInstance(t, open(t, url, pfx, "A"), cfg)
	b := newInstance(t, open(t, url, pfx, "B"), cfg)
	if _, err := a.eng.Join("lead", engine.JoinRequest{SessionID: "s1", DisplayName: "Alex"}); err != nil {
		t.Fatal(err)
	}
	token := a.eng.MemberToken("lead", "s1")
	if len(token) < 22 {
		t.Fatalf("token %d characters", len(token))
	}
	if _, err := b.eng.Join("f", engine.JoinRequest{SessionID: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.eng.Play("lead", "s1", 0); err != nil {
		t.Fatal(err)
	}
	a.eng.Detach("lead") // the page went away
	st, err := b.eng.Join("lead2", engine.JoinRequest{SessionID: "s1", MemberToken: token})
	if err != nil {
		t.Fatal(err)
	}
	if leaderOf(st) != "lead2" || !st.IsPlaying || st.MemberCount != 2 || st.Members[0].DisplayName != "Alex" {
		t.Fatalf("after resuming on B: leader %q playing %v members %+v", leaderOf(st), st.IsPlaying, st.Members)
	}
	time.Sleep(2500 * time.Millisecond) // past the old socket's grace period
	for _, d := range b.out.events("f") {
		if d.Event == protocol.EventRoleChanged {
			t.Fatalf("the follower was told of a leadership change: %s", d.Payload)
		}
	}
	if st, _ := a.eng.Session("s1"); leaderOf(st) != "lead2" {
		t.Fatalf("leader after the grace period: %q", leaderOf(st))
	}
	if _, err := b.eng.Pause("lead2", "s1"); err != nil {
		t.Fatalf("the resumed leader cannot lead: %v", err)
	}
}
