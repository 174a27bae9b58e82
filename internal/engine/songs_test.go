package engine_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/store"
)

const chart = "{title: Lights}\n{artist: Band}\n{key: Am}\n{tempo: 96}\n{time: 3/4}\n[Am]Lights come [D]on\n"

func TestAddAndSelectSong(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s")
	f.join("b", "s")
	st := f.state("s")
	if st.SongID != nil || len(st.Setlist) != 0 || st.TimeSignature != (engine.TimeSignature{BeatsPerBar: 4, BeatUnit: 4}) || st.CountInBars != 1 {
		t.Fatalf("defaults: songId %v setlist %v sig %v countIn %d", st.SongID, st.Setlist, st.TimeSignature, st.CountInBars)
	}
	ok(t)(f.e.Play("a", "s", 0))
	f.clk.Advance(3 * time.Second)
	song, st, err := f.e.AddSong("a", "s", chart)
	if err != nil {
		t.Fatal(err)
	}
	if song.Title != "Lights" || song.Artist != "Band" || song.Key != "Am" || *song.Tempo != 96 || *song.TimeSignature != (engine.TimeSignature{BeatsPerBar: 3, BeatUnit: 4}) || song.Version != 1 {
		t.Fatalf("summary = %+v", song)
	}
	if len(st.Setlist) != 1 || st.Setlist[0].SongID != song.SongID || !st.IsPlaying {
		t.Fatalf("adding a song must not touch playback: %+v", st)
	}
	f.out.Reset()
	st = ok(t)(f.e.SelectSong("a", "s", song.SongID))
	if *st.SongID != song.SongID || st.IsPlaying || st.Position != 0 || st.Beat != 0 || st.Tempo != 96 || st.TimeSignature != (engine.TimeSignature{BeatsPerBar: 3, BeatUnit: 4}) {
		t.Fatalf("after select: %+v", st)
	}
	if got := f.out.Names(); strings.Join(got, ",") != "to_session:song_changed,to_session:snapshot" {
		t.Fatalf("select sent %v", got)
	}
	ch := lastPayload[engine.SongChanged](t, f.out, protocol.EventSongChanged)
	if ch.SongID != song.SongID || ch.Title != "Lights" || ch.TempoBpm != 96 || ch.TimeSignature.BeatsPerBar != 3 {
		t.Fatalf("song_changed = %+v", ch)
	}
	got, err := f.e.GetSong("b", "s", song.SongID)
	if err != nil || got.ChordPro != chart || got.Title != "Lights" {
		t.Fatalf("GetSong = %+v, %v", got, err)
	}
}

func TestSongRefusalsChangeNothing(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s")
	f.join("b", "s")
	song, _, err := f.e.AddSong("a", "s", chart)
	if err != nil {
		t.Fatal(err)
	}
	before := f.state("s").Version
	f.out.Reset()
	_, _, err = f.e.AddSong("b", "s", chart)
	wantCode(t, err, protocol.CodeNotLeader)
	_, _, err = f.e.AddSong("a", "s", "[C]no title")
	wantCode(t, err, protocol.CodeInvalidPayload)
	_, _, err = f.e.AddSong("a", "s", "{title: x}\n{tempo: 400}")
	wantCode(t, err, protocol.CodeInvalidPayload)
	_, _, err = f.e.AddSong("a", "s", "{title: x}\n{time: 17/4}")
	wantCode(t, err, protocol.CodeInvalidPayload)
	_, _, err = f.e.AddSong("a", "s", "{title: x}\n"+strings.Repeat("a", engine.MaxChartBytes))
	wantCode(t, err, protocol.CodePayloadTooLarge)
	_, _, err = f.e.AddSong("z", "s", chart)
	wantCode(t, err, protocol.CodeNotInSession)
	for name, err := range map[string]error{
		"select":  second(f.e.SelectSong("a", "s", "song-99")),
		"update":  second(f.e.UpdateSong("a", "s", "song-99", chart)),
		"remove":  second(f.e.RemoveSong("a", "s", "song-99")),
		"move":    second(f.e.MoveSong("a", "s", "song-99", 0)),
		"get":     second(f.e.GetSong("a", "s", "song-99")),
		"select2": second(f.e.SelectSong("b", "s", song.SongID)),
	} {
		code := protocol.CodeSongNotFound
		if name == "select2" {
			code = protocol.CodeNotLeader
		}
		t.Run(name, func(t *testing.T) { wantCode(t, err, code) })
	}
	_, err = f.e.GetSong("z", "s", song.SongID)
	wantCode(t, err, protocol.CodeNotInSession)
	wantCode(t, second(f.e.SetTimeSignature("a", "s", 0, 4)), protocol.CodeInvalidPayload)
	wantCode(t, second(f.e.SetTimeSignature("a", "s", 4, 3)), protocol.CodeInvalidPayload)
	wantCode(t, second(f.e.SetTimeSignature("b", "s", 4, 8)), protocol.CodeNotLeader)
	wantCode(t, second(f.e.SetCountIn("a", "s", 5)), protocol.CodeInvalidPayload)
	wantCode(t, second(f.e.SetCountIn("b", "s", 2)), protocol.CodeNotLeader)
	if v := f.state("s").Version; v != before {
		t.Fatalf("version moved from %d to %d on refusals", before, v)
	}
	if n := len(f.out.Names()); n != 0 {
		t.Fatalf("refusals sent %v", f.out.Names())
	}
}

func second[A, B any](_ A, b B) B { return b }

func TestLibraryFull(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s")
	for i := range engine.MaxSongs {
		if _, _, err := f.e.AddSong("a", "s", fmt.Sprintf("{title: Song %d}", i)); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := f.e.AddSong("a", "s", "{title: one too many}")
	wantCode(t, err, protocol.CodeLibraryFull)
	if n := len(f.state("s").Setlist); n != engine.MaxSongs {
		t.Fatalf("setlist has %d songs", n)
	}

	// The bytes of all charts are bounded too.
	g := newFixture(t)
	g.join("a", "s")
	big := "{title: big}\n" + strings.Repeat("x", engine.MaxChartBytes-20)
	for range engine.MaxLibraryBytes / len(big) {
		if _, _, err := g.e.AddSong("a", "s", big); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err = g.e.AddSong("a", "s", big)
	wantCode(t, err, protocol.CodeLibraryFull)
}

func TestMoveRemoveUpdate(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s")
	var ids []string
	for _, title := range []string{"A", "B", "C"} {
		s, _, err := f.e.AddSong("a", "s", "{title: "+title+"}")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.SongID)
	}
	order := func(st engine.State) string {
		var b strings.Builder
		for _, s := range st.Setlist {
			b.WriteString(s.Title)
		}
		return b.String()
	}
	if got := order(ok(t)(f.e.MoveSong("a", "s", ids[0], 99))); got != "BCA" {
		t.Fatalf("move to 99 (clamped to the end) = %s", got)
	}
	if got := order(ok(t)(f.e.MoveSong("a", "s", ids[2], -5))); got != "CBA" {
		t.Fatalf("move to -5 (clamped to 0) = %s", got)
	}
	ok(t)(f.e.SelectSong("a", "s", ids[1]))
	st := ok(t)(f.e.UpdateSong("a", "s", ids[1], "{title: B2}\n{tempo: 140}"))
	if st.Setlist[1].Title != "B2" || st.Setlist[1].Version != 2 || *st.Setlist[1].Tempo != 140 {
		t.Fatalf("after update: %+v", st.Setlist[1])
	}
	st = ok(t)(f.e.RemoveSong("a", "s", ids[1]))
	if st.SongID != nil || order(st) != "CA" {
		t.Fatalf("removing the current song: songId %v, order %s", st.SongID, order(st))
	}
}

func TestSongsSurviveTheStore(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s")
	song, _, err := f.e.AddSong("a", "s", chart)
	if err != nil {
		t.Fatal(err)
	}
	ok(t)(f.e.SelectSong("a", "s", song.SongID))
	ok(t)(f.e.SetCountIn("a", "s", 0))
	rec, found, err := f.st.Load(context.Background(), "s")
	if err != nil || !found {
		t.Fatal(found, err)
	}
	// A second process on the same store restores the session.
	g := newFixture(t)
	if err := g.st.Save(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	g.join("x", "s")
	st := g.state("s")
	if *st.SongID != song.SongID || st.CountInBars != 0 || st.TimeSignature.BeatsPerBar != 3 || len(st.Setlist) != 1 {
		t.Fatalf("restored: %+v", st.SongState)
	}
	got, err := g.e.GetSong("x", "s", song.SongID)
	if err != nil || got.ChordPro != chart {
		t.Fatalf("restored chart = %q, %v", got.ChordPro, err)
	}
	// A record from before songs reads with the defaults.
	old := store.SessionRecord{SessionID: "old", Tempo: 100, Version: 3}
	if err := g.st.Save(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	g.join("y", "old")
	if st := g.state("old"); st.CountInBars != 1 || st.TimeSignature != (engine.TimeSignature{BeatsPerBar: 4, BeatUnit: 4}) || st.Setlist == nil {
		t.Fatalf("old record: %+v", st.SongState)
	}
}
