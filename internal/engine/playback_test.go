package engine_test

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/protocol"
)

func TestPositionIsDerivedWithoutDrift(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	start := f.clk.Now()
	ok(t)(f.e.Play("a", "s1", 0))

	// Jittered tick instants: a server that added the nominal interval per
	// tick would be off by the sum of the jitter.
	elapsed := time.Duration(0)
	for i := range 500 {
		step := 16*time.Millisecond + time.Duration(i%7)*731*time.Microsecond
		f.clk.Advance(step)
		elapsed += step
		f.out.Reset()
		f.e.Tick(f.clk.Now())
		tick := lastPayload[engine.Tick](t, f.out, protocol.EventScrollTick)
		if want := float64(elapsed) / float64(time.Millisecond); tick.PositionMs != want {
			t.Fatalf("tick %d: positionMs %v, want %v", i, tick.PositionMs, want)
		}
	}
	f.clk.Advance(time.Hour - elapsed)
	st := f.state("s1")
	if st.PositionMs != 3_600_000 || st.Position != 3_600_000 {
		t.Fatalf("after 1 h position = %v / %v, want exactly 3600000", st.PositionMs, st.Position)
	}
	if st.ServerTimestamp != ms(start.Add(time.Hour)) {
		t.Fatalf("serverTimestamp = %v, want %v", st.ServerTimestamp, ms(start.Add(time.Hour)))
	}
	if want := 3_600_000 * 120.0 / 60000; st.Beat != want {
		t.Fatalf("beat after 1 h at 120 bpm = %v, want %v", st.Beat, want)
	}
}

func TestPositionClampsAt24Hours(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	ok(t)(f.e.Seek("a", "s1", engine.MaxPositionMs-1000))
	ok(t)(f.e.Play("a", "s1", 0))
	f.clk.Advance(time.Hour)
	if p := f.state("s1").PositionMs; p != engine.MaxPositionMs {
		t.Fatalf("position = %v, want clamped to %v", p, engine.MaxPositionMs)
	}
}

func TestTempoChangeKeepsBeatPhase(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	ok(t)(f.e.Play("a", "s1", 0))
	f.clk.Advance(1234 * time.Millisecond)
	before := f.state("s1")
	if want := 1234 * 120.0 / 60000; math.Abs(before.Beat-want) > 1e-9 {
		t.Fatalf("beat before change = %v, want %v", before.Beat, want)
	}
	after := ok(t)(f.e.SetTempo("a", "s1", 90))
	if math.Abs(after.Beat-before.Beat) > 1e-9 || after.PositionMs != before.PositionMs {
		t.Fatalf("at the change: beat %v -> %v, position %v -> %v; want continuous",
			before.Beat, after.Beat, before.PositionMs, after.PositionMs)
	}
	if after.Tempo != 90 || after.TempoBpm != 90 || !after.IsPlaying {
		t.Fatalf("after change tempo %v/%v playing %v", after.Tempo, after.TempoBpm, after.IsPlaying)
	}
	// One beat at the new tempo is 60000/90 ms.
	f.clk.Advance(2000 * time.Millisecond)
	later := f.state("s1")
	if want := before.Beat + 2000*90.0/60000; math.Abs(later.Beat-want) > 1e-9 {
		t.Fatalf("beat 2 s after change = %v, want %v (grid at 90 bpm)", later.Beat, want)
	}
	f.out.Reset()
	f.e.Tick(f.clk.Now())
	tick := lastPayload[engine.Tick](t, f.out, protocol.EventScrollTick)
	if tick.TempoBpm != 90 || math.Abs(tick.Beat-later.Beat) > 1e-9 || tick.PositionMs != 3234 {
		t.Fatalf("tick = %+v, want tempo 90, beat %v, position 3234", tick, later.Beat)
	}
	// Seek extrapolates the beat on the current grid.
	st := ok(t)(f.e.Seek("a", "s1", 10000))
	if want := before.Beat + (10000-1234)*90.0/60000; math.Abs(st.Beat-want) > 1e-9 {
		t.Fatalf("beat after seek = %v, want %v", st.Beat, want)
	}
}

func TestScheduledStartHoldsPositionUntilStartsAt(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	ok(t)(f.e.Seek("a", "s1", 2000))
	now := f.clk.Now()
	f.out.Reset()
	st := ok(t)(f.e.Play("a", "s1", 500))
	if st.StartsAt == nil || *st.StartsAt != ms(now)+500 || !st.IsPlaying {
		t.Fatalf("snapshot startsAt = %v playing %v; want %v", st.StartsAt, st.IsPlaying, ms(now)+500)
	}
	if got := f.out.Names(); !slices.Equal(got, []string{"to_session:play", "to_session:snapshot"}) {
		t.Fatalf("play sent %v", got)
	}
	p := lastPayload[engine.PlayEvent](t, f.out, protocol.EventPlay)
	if p.StartsAt != ms(now)+500 || p.ServerTimestamp != ms(now) || p.Position != 2000 || p.PositionMs != 2000 || p.TempoBpm != 120 || p.SessionID != "s1" {
		t.Fatalf("play = %+v", p)
	}
	f.clk.Advance(499 * time.Millisecond)
	f.out.Reset()
	f.e.Tick(f.clk.Now())
	if tick := lastPayload[engine.Tick](t, f.out, protocol.EventScrollTick); tick.PositionMs != 2000 {
		t.Fatalf("tick before startsAt: position %v, want 2000 (held)", tick.PositionMs)
	}
	f.clk.Advance(1001 * time.Millisecond)
	if pos := f.state("s1").PositionMs; pos != 3000 {
		t.Fatalf("1 s after startsAt position = %v, want 3000", pos)
	}

	g := newFixture(t)
	g.join("a", "s1")
	ok(t)(g.e.Play("a", "s1", 0))
	if p := lastPayload[engine.PlayEvent](t, g.out, protocol.EventPlay); p.StartsAt != p.ServerTimestamp {
		t.Fatalf("play without delay: startsAt %v != serverTimestamp %v", p.StartsAt, p.ServerTimestamp)
	}
}

func TestSeekPauseStopValues(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	ok(t)(f.e.Play("a", "s1", 0))
	f.clk.Advance(time.Second)

	st := ok(t)(f.e.Seek("a", "s1", 5000))
	seek := lastPayload[engine.TransportEvent](t, f.out, protocol.EventSeek)
	if seek.Position != 5000 || seek.PositionMs != 5000 || seek.ServerTimestamp != ms(f.clk.Now()) || !st.IsPlaying {
		t.Fatalf("seek = %+v, playing %v", seek, st.IsPlaying)
	}
	f.clk.Advance(250 * time.Millisecond)
	st = ok(t)(f.e.Pause("a", "s1"))
	pause := lastPayload[engine.TransportEvent](t, f.out, protocol.EventPause)
	if pause.Position != 5250 || st.PositionMs != 5250 || st.IsPlaying || st.StartsAt != nil {
		t.Fatalf("pause = %+v, state position %v playing %v startsAt %v", pause, st.PositionMs, st.IsPlaying, st.StartsAt)
	}
	f.clk.Advance(10 * time.Second)
	if pos := f.state("s1").PositionMs; pos != 5250 {
		t.Fatalf("paused position moved to %v", pos)
	}
	st = ok(t)(f.e.Seek("a", "s1", 100))
	if st.PositionMs != 100 || st.IsPlaying {
		t.Fatalf("seek while paused: position %v playing %v", st.PositionMs, st.IsPlaying)
	}
	f.out.Reset()
	st = ok(t)(f.e.Stop("a", "s1"))
	if st.PositionMs != 0 || st.Beat != 0 || st.IsPlaying {
		t.Fatalf("stop: position %v beat %v playing %v", st.PositionMs, st.Beat, st.IsPlaying)
	}
	stop := lastPayload[engine.StopEvent](t, f.out, protocol.EventStop)
	if stop.SessionID != "s1" || stop.ServerTimestamp != ms(f.clk.Now()) {
		t.Fatalf("stop = %+v", stop)
	}
	if got := f.out.Names(); !slices.Equal(got, []string{"to_session:stop", "to_session:snapshot"}) {
		t.Fatalf("stop sent %v", got)
	}
}

func TestNoOpCommandsSucceedWithoutAChange(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	ok(t)(f.e.Seek("a", "s1", 300))
	ok(t)(f.e.Play("a", "s1", 1000))
	v := f.state("s1").Version
	f.out.Reset()
	f.clk.Advance(100 * time.Millisecond)
	st := ok(t)(f.e.Play("a", "s1", 0)) // already playing: keeps the scheduled start
	if st.Version != v || *st.StartsAt != ms(t0)+1000 {
		t.Fatalf("play while playing: version %d -> %d, startsAt %v", v, st.Version, *st.StartsAt)
	}
	ok(t)(f.e.SetTempo("a", "s1", 120))
	ok(t)(f.e.UpdateMessage("a", "s1", ""))
	ok(t)(f.e.Pause("a", "s1"))
	v = f.state("s1").Version
	f.out.Reset()
	ok(t)(f.e.Pause("a", "s1"))
	ok(t)(f.e.Stop("a", "s1"))
	ok(t)(f.e.Stop("a", "s1"))
	if st := f.state("s1"); st.Version != v+1 {
		t.Fatalf("pause twice + stop twice: version %d -> %d, want +1 (only the first stop)", v, st.Version)
	}
	// Each accepted no-op is answered to its sender alone (the original's
	// clients wait for that snapshot); only the real stop reaches the room.
	want := []string{
		"to_member:a:pause", "to_member:a:snapshot",
		"to_session:stop", "to_session:snapshot",
		"to_member:a:stop", "to_member:a:snapshot",
	}
	if got := f.out.Names(); !slices.Equal(got, want) {
		t.Fatalf("no-op commands sent %v, want %v", got, want)
	}
}

func TestEveryChangeBumpsVersionByOneAndIsSaved(t *testing.T) {
	f := newFixture(t)
	steps := []struct {
		name string
		do   func() error
	}{
		{"join a", func() error { _, err := f.e.Join("a", engine.JoinRequest{SessionID: "s1"}); return err }},
		{"join b", func() error { _, err := f.e.Join("b", engine.JoinRequest{SessionID: "s1"}); return err }},
		{"tempo", func() error { _, err := f.e.SetTempo("a", "s1", 98.5); return err }},
		{"play", func() error { _, err := f.e.Play("a", "s1", 250); return err }},
		{"seek", func() error { _, err := f.e.Seek("a", "s1", 42); return err }},
		{"message", func() error { _, err := f.e.UpdateMessage("b", "s1", "Chorus x2"); return err }},
		{"pause", func() error { _, err := f.e.Pause("a", "s1"); return err }},
		{"stop", func() error { _, err := f.e.Stop("a", "s1"); return err }},
		{"step down", func() error { _, err := f.e.SetRole("a", "s1", engine.RoleFollower); return err }},
		{"claim", func() error { _, err := f.e.SetRole("b", "s1", engine.RoleLeader); return err }},
		{"detach", func() error { f.e.Detach("a"); return nil }},
		{"attach", func() error { f.e.Attach("a"); return nil }},
		{"leave", func() error { return f.e.Leave("a", "s1") }},
	}
	for i, s := range steps {
		f.clk.Advance(time.Second)
		f.out.Reset()
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		want := uint64(i + 1)
		st := f.state("s1")
		if st.Version != want {
			t.Fatalf("after %s version = %d, want %d", s.name, st.Version, want)
		}
		if st.LastActiveAt != f.clk.Now().UnixMilli() {
			t.Fatalf("after %s lastActiveAt = %d, want now", s.name, st.LastActiveAt)
		}
		rec, found, _ := f.st.Load(t.Context(), "s1")
		if !found || rec.Version != want {
			t.Fatalf("after %s stored version = %d (found %v), want %d", s.name, rec.Version, found, want)
		}
		snaps := f.out.Events(protocol.EventSnapshot)
		if len(snaps) == 0 || snaps[len(snaps)-1].Payload.(engine.State).Version != want {
			t.Fatalf("after %s the broadcast snapshot does not carry version %d", s.name, want)
		}
	}
	rec, _, _ := f.st.Load(t.Context(), "s1")
	// The message b wrote was replaced by the status text of the last
	// leadership change, as the original server does.
	if rec.Message != "Leader connected" || rec.Tempo != 98.5 || rec.LeaderID != "b" || len(rec.Members) != 1 {
		t.Fatalf("stored record = %+v", rec)
	}
}

func TestSyncRequest(t *testing.T) {
	f := newFixture(t)
	f.join("a", "s1")
	f.join("b", "s1")
	ok(t)(f.e.SetTempo("a", "s1", 140))
	ok(t)(f.e.Play("a", "s1", 0))
	f.clk.Advance(1500 * time.Millisecond)
	got, err := f.e.SyncRequest("b", "s1")
	if err != nil {
		t.Fatal(err)
	}
	want := engine.SyncResponse{SessionID: "s1", PositionMs: 1500, TempoBpm: 140, IsPlaying: true, ServerTime: ms(f.clk.Now())}
	if got != want {
		t.Fatalf("SyncRequest = %+v, want %+v", got, want)
	}
	_, err = f.e.SyncRequest("zed", "s1")
	wantCode(t, err, protocol.CodeNotInSession)
}
