package engine

// This file holds the songs and setlists of a session (docs/protocol.md): the session's library as part of its state, the commands that change
// it, and the engine methods the event handlers call. Charts are parsed
// (internal/chordpro) before a command runs, outside any lock; the
// transitions only check permissions and limits and move values.

import (
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/bandsync/bandsync/internal/chordpro"
	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/store"
)

// Limits of the songs model.
const (
	MaxSongs = 100
	// MaxChartBytes bounds one chart's ChordPro text.
	MaxChartBytes = 64 << 10
	// MaxLibraryBytes bounds the chart text of one session's whole
	// library. The protocol's own limits allow 100 charts of 64 KB, 6.4 MB
	// per session, which every change would write to the store and every
	// instance would keep; real charts are 2-10 KB, so 1 MB holds a
	// 100-song setlist while keeping a session's cost bounded.
	MaxLibraryBytes = 1 << 20
	// MaxSongTitleLen bounds {title} and {artist} (characters): they go
	// out in every snapshot's setlist.
	MaxSongTitleLen = 200
	MaxSongKeyLen   = 16

	MinBeatsPerBar     = 1
	MaxBeatsPerBar     = 16
	DefaultBeatsPerBar = 4
	DefaultBeatUnit    = 4
	MaxCountInBars     = 4
	DefaultCountInBars = 1
)

// ReasonHandover is the role_changed reason of transfer_leadership.
const ReasonHandover = "handover"

// TimeSignature is a bar's shape: beatsPerBar beats of a 1/beatUnit note.
type TimeSignature struct {
	BeatsPerBar int `json:"beatsPerBar"`
	BeatUnit    int `json:"beatUnit"`
}

// SongSummary is a song in the snapshot's setlist: everything but the
// chart. Tempo and TimeSignature are null when the chart names none.
type SongSummary struct {
	SongID        string         `json:"songId"`
	Title         string         `json:"title"`
	Artist        string         `json:"artist"`
	Key           string         `json:"key"`
	Tempo         *float64       `json:"tempo"`
	TimeSignature *TimeSignature `json:"timeSignature"`
	Version       uint64         `json:"version"`
}

// Song is a song with its chart, as get_song answers.
type Song struct {
	SongSummary
	ChordPro string `json:"chordpro"`
}

// SongState is the songs part of a snapshot; it is embedded in State, so
// its fields are snapshot fields.
type SongState struct {
	Setlist       []SongSummary `json:"setlist"`
	SongID        *string       `json:"songId"`
	TimeSignature TimeSignature `json:"timeSignature"`
	CountInBars   int           `json:"countInBars"`
}

// SongChanged is the song_changed payload.
type SongChanged struct {
	SessionID     string        `json:"sessionId"`
	SongID        string        `json:"songId"`
	Title         string        `json:"title"`
	TempoBpm      float64       `json:"tempoBpm"`
	TimeSignature TimeSignature `json:"timeSignature"`
}

// song is one chart of a setlist.
type song struct {
	id, title, artist, key string
	tempo                  float64 // 0: none in the chart
	sig                    TimeSignature
	version                uint64
	text                   string
}

// library is a session's songs; part of sessionState.
type library struct {
	songs []song
	// setlist is songs as the snapshot shows them, rebuilt by changed()
	// whenever songs change: every snapshot carries it, and building 100
	// summaries per snapshot made a command in a session with a full
	// setlist several times slower. Snapshots share it, so it is replaced,
	// never modified.
	setlist []SongSummary
	current string // "" when no song is selected
	seq     uint64
	sig     TimeSignature
	countIn int
}

func newLibrary() library {
	return library{setlist: []SongSummary{}, sig: TimeSignature{DefaultBeatsPerBar, DefaultBeatUnit}, countIn: DefaultCountInBars}
}

// changed rebuilds the setlist after songs changed.
func (l *library) changed() {
	list := make([]SongSummary, len(l.songs))
	for i := range l.songs {
		list[i] = l.songs[i].summary()
	}
	l.setlist = list
}

func (l library) clone() library {
	l.songs = slices.Clone(l.songs)
	return l
}

func (l *library) find(id string) int {
	for i := range l.songs {
		if l.songs[i].id == id {
			return i
		}
	}
	return -1
}

func (l *library) bytes() int {
	n := 0
	for i := range l.songs {
		n += len(l.songs[i].text)
	}
	return n
}

func (g *song) summary() SongSummary {
	s := SongSummary{SongID: g.id, Title: g.title, Artist: g.artist, Key: g.key, Version: g.version}
	if g.tempo > 0 {
		t := g.tempo
		s.Tempo = &t
	}
	if g.sig.BeatsPerBar > 0 {
		sig := g.sig
		s.TimeSignature = &sig
	}
	return s
}

func (l *library) wire() SongState {
	return SongState{Setlist: l.setlist, SongID: optString(l.current), TimeSignature: l.sig, CountInBars: l.countIn}
}

func (l *library) record() store.Library {
	r := store.Library{SongID: l.current, SongSeq: l.seq, BeatsPerBar: l.sig.BeatsPerBar, BeatUnit: l.sig.BeatUnit}
	n := l.countIn
	r.CountInBars = &n
	if len(l.songs) > 0 {
		r.Songs = make([]store.Song, len(l.songs))
	}
	for i, g := range l.songs {
		r.Songs[i] = store.Song{SongID: g.id, Title: g.title, Artist: g.artist, Key: g.key, Tempo: g.tempo,
			BeatsPerBar: g.sig.BeatsPerBar, BeatUnit: g.sig.BeatUnit, Version: g.version, ChordPro: g.text}
	}
	return r
}

// libraryFromRecord rebuilds a library; a record from before songs (or
// one with out-of-range values) gets the defaults.
func libraryFromRecord(r store.Library) library {
	l := newLibrary()
	l.current, l.seq = r.SongID, r.SongSeq
	if sig := (TimeSignature{r.BeatsPerBar, r.BeatUnit}); validateTimeSignature(sig) == nil {
		l.sig = sig
	}
	if r.CountInBars != nil && *r.CountInBars >= 0 && *r.CountInBars <= MaxCountInBars {
		l.countIn = *r.CountInBars
	}
	for _, g := range r.Songs {
		l.songs = append(l.songs, songFromRecord(g))
	}
	if l.current != "" && l.find(l.current) < 0 {
		l.current = ""
	}
	l.changed()
	return l
}

func songFromRecord(g store.Song) song {
	return song{id: g.SongID, title: g.Title, artist: g.Artist, key: g.Key, tempo: g.Tempo,
		sig: TimeSignature{g.BeatsPerBar, g.BeatUnit}, version: g.Version, text: g.ChordPro}
}

func validateTimeSignature(sig TimeSignature) error {
	switch {
	case sig.BeatsPerBar < MinBeatsPerBar || sig.BeatsPerBar > MaxBeatsPerBar:
		return newError(protocol.CodeInvalidPayload, "beatsPerBar must be a whole number from %d to %d, got %d",
			MinBeatsPerBar, MaxBeatsPerBar, sig.BeatsPerBar)
	case !slices.Contains([]int{1, 2, 4, 8, 16}, sig.BeatUnit):
		return newError(protocol.CodeInvalidPayload, "beatUnit must be 1, 2, 4, 8 or 16, got %d", sig.BeatUnit)
	}
	return nil
}

// parseChart turns a chart into a song (without id and version), or the
// refusal the client gets.
func parseChart(text string) (song, error) {
	if len(text) > MaxChartBytes {
		return song{}, newError(protocol.CodePayloadTooLarge, "chordpro is %d bytes; a chart may have at most %d", len(text), MaxChartBytes)
	}
	p, err := chordpro.ParseMeta(text) // the chart is kept as text; only its meta matters here
	if err != nil {
		return song{}, newError(protocol.CodeInvalidPayload, "chordpro: %v", err)
	}
	g := song{title: stripControl(p.Title), artist: stripControl(p.Artist), key: stripControl(p.Key), text: text}
	switch {
	case g.title == "":
		return song{}, newError(protocol.CodeInvalidPayload, "chordpro: {title} has no printable characters")
	case utf8.RuneCountInString(g.title) > MaxSongTitleLen:
		return song{}, newError(protocol.CodeInvalidPayload, "chordpro: {title} must be at most %d characters", MaxSongTitleLen)
	case utf8.RuneCountInString(g.artist) > MaxSongTitleLen:
		return song{}, newError(protocol.CodeInvalidPayload, "chordpro: {artist} must be at most %d characters", MaxSongTitleLen)
	case utf8.RuneCountInString(g.key) > MaxSongKeyLen:
		return song{}, newError(protocol.CodeInvalidPayload, "chordpro: {key} must be at most %d characters", MaxSongKeyLen)
	}
	if p.Tempo != 0 {
		if !finiteIn(p.Tempo, MinTempo, MaxTempo) {
			return song{}, newError(protocol.CodeInvalidPayload, "chordpro: {tempo} must be from %s to %s, got %s",
				fmtNum(MinTempo), fmtNum(MaxTempo), fmtNum(p.Tempo))
		}
		g.tempo = p.Tempo
	}
	if p.BeatsPerBar != 0 {
		g.sig = TimeSignature{p.BeatsPerBar, p.BeatUnit}
		if err := validateTimeSignature(g.sig); err != nil {
			return song{}, newError(protocol.CodeInvalidPayload, "chordpro: {time}: %s", err.(*Error).Message)
		}
	}
	return g, nil
}

func songNotFound(id string) *Error {
	return newError(protocol.CodeSongNotFound, "no song %s in this session's setlist", quoteShort(id))
}

func libraryFull(what string) *Error { return newError(protocol.CodeLibraryFull, "%s", what) }

// ---- commands ----

type addSongCmd struct {
	member string
	song   song
}

func (c addSongCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	if err := requireLeader(s, c.member, "add songs"); err != nil {
		return out, err
	}
	l := &s.lib
	if len(l.songs) >= MaxSongs {
		return out, libraryFull("the setlist already has " + strconv.Itoa(MaxSongs) + " songs; remove one first")
	}
	if l.bytes()+len(c.song.text) > MaxLibraryBytes {
		return out, newError(protocol.CodeLibraryFull, "the session's charts would take more than %d bytes; remove a song first", MaxLibraryBytes)
	}
	s.touch(now)
	out.changed = true
	l.seq++
	g := c.song
	g.id = "song-" + strconv.FormatUint(l.seq, 10)
	g.version = 1
	l.songs = append(l.songs, g)
	l.changed()
	out.broadcast(protocol.EventSnapshot, s.snapshot(now))
	return out, nil
}

type updateSongCmd struct {
	member, id string
	song       song
}

func (c updateSongCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	if err := requireLeader(s, c.member, "update songs"); err != nil {
		return out, err
	}
	l := &s.lib
	i := l.find(c.id)
	if i < 0 {
		return out, songNotFound(c.id)
	}
	if l.bytes()-len(l.songs[i].text)+len(c.song.text) > MaxLibraryBytes {
		return out, newError(protocol.CodeLibraryFull, "the session's charts would take more than %d bytes", MaxLibraryBytes)
	}
	if l.songs[i].text == c.song.text {
		out.echo(s, c.member, now, "", nil)
		return out, nil
	}
	s.touch(now)
	out.changed = true
	g := c.song
	g.id, g.version = c.id, l.songs[i].version+1
	l.songs[i] = g
	l.changed()
	out.broadcast(protocol.EventSnapshot, s.snapshot(now))
	return out, nil
}

type removeSongCmd struct{ member, id string }

func (c removeSongCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	if err := requireLeader(s, c.member, "remove songs"); err != nil {
		return out, err
	}
	l := &s.lib
	i := l.find(c.id)
	if i < 0 {
		return out, songNotFound(c.id)
	}
	s.touch(now)
	out.changed = true
	l.songs = slices.Delete(l.songs, i, i+1)
	if l.current == c.id {
		l.current = ""
	}
	l.changed()
	out.broadcast(protocol.EventSnapshot, s.snapshot(now))
	return out, nil
}

type moveSongCmd struct {
	member, id string
	index      int
}

func (c moveSongCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	if err := requireLeader(s, c.member, "reorder the setlist"); err != nil {
		return out, err
	}
	l := &s.lib
	i := l.find(c.id)
	if i < 0 {
		return out, songNotFound(c.id)
	}
	to := max(0, min(c.index, len(l.songs)-1))
	if to == i {
		out.echo(s, c.member, now, "", nil)
		return out, nil
	}
	s.touch(now)
	out.changed = true
	g := l.songs[i]
	l.songs = slices.Insert(slices.Delete(l.songs, i, i+1), to, g)
	l.changed()
	out.broadcast(protocol.EventSnapshot, s.snapshot(now))
	return out, nil
}

// selectSongCmd makes a song current. The band starts it from the top:
// playback stops at 0, and the chart's tempo and time signature, where it
// names them, become the session's.
type selectSongCmd struct{ member, id string }

func (c selectSongCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	var out outcome
	if err := requireLeader(s, c.member, "select songs"); err != nil {
		return out, err
	}
	l := &s.lib
	i := l.find(c.id)
	if i < 0 {
		return out, songNotFound(c.id)
	}
	s.touch(now)
	out.changed = true
	g := l.songs[i]
	l.current = g.id
	s.playing = false
	s.startsAt = time.Time{}
	s.reanchor(now, 0, 0)
	if g.tempo > 0 {
		s.tempo = g.tempo
	}
	if g.sig.BeatsPerBar > 0 {
		l.sig = g.sig
	}
	out.broadcast(protocol.EventSongChanged, SongChanged{SessionID: s.id, SongID: g.id, Title: g.title, TempoBpm: s.tempo, TimeSignature: l.sig})
	out.broadcast(protocol.EventSnapshot, s.snapshot(now))
	return out, nil
}

type setTimeSignatureCmd struct {
	member string
	sig    TimeSignature
}

func (c setTimeSignatureCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	return setLeaderSetting(s, c.member, "set the time signature", &s.lib.sig, c.sig, now)
}

type setCountInCmd struct {
	member string
	bars   int
}

func (c setCountInCmd) apply(s *sessionState, now time.Time, _ policy) (outcome, error) {
	return setLeaderSetting(s, c.member, "set the count-in", &s.lib.countIn, c.bars, now)
}

// setLeaderSetting is a leader's change of one of the session's settings
// that only a snapshot carries: what is refused to whom, and that setting
// it to what it is already is an echo to the sender, not a change.
func setLeaderSetting[T comparable](s *sessionState, member, what string, field *T, v T, now time.Time) (outcome, error) {
	var out outcome
	if err := requireLeader(s, member, what); err != nil {
		return out, err
	}
	if *field == v {
		out.echo(s, member, now, "", nil)
		return out, nil
	}
	s.touch(now)
	out.changed = true
	*field = v
	out.broadcast(protocol.EventSnapshot, s.snapshot(now))
	return out, nil
}

// ---- engine methods ----

// AddSong parses a ChordPro chart and appends it to the setlist (leader
// only). It returns the new song's summary with the resulting state.
func (e *Engine) AddSong(memberID, sessionID, chart string) (SongSummary, State, error) {
	if err := ValidateSessionID(sessionID); err != nil {
		return SongSummary{}, State{}, err
	}
	g, err := parseChart(chart)
	if err != nil {
		return SongSummary{}, State{}, err
	}
	st, err := e.command(sessionID, addSongCmd{member: memberID, song: g})
	if err != nil {
		return SongSummary{}, State{}, err
	}
	// The snapshot is taken under the session lock right after the
	// command, so the new song is the setlist's last.
	return st.Setlist[len(st.Setlist)-1], st, nil
}

// UpdateSong replaces a song's chart (leader only); its version goes up.
func (e *Engine) UpdateSong(memberID, sessionID, songID, chart string) (State, error) {
	if err := ValidateSessionID(sessionID); err != nil {
		return State{}, err
	}
	g, err := parseChart(chart)
	if err != nil {
		return State{}, err
	}
	return e.command(sessionID, updateSongCmd{member: memberID, id: songID, song: g})
}

// RemoveSong takes a song out of the setlist (leader only).
func (e *Engine) RemoveSong(memberID, sessionID, songID string) (State, error) {
	return e.command(sessionID, removeSongCmd{member: memberID, id: songID})
}

// MoveSong moves a song to index (0-based, clamped) in the setlist.
func (e *Engine) MoveSong(memberID, sessionID, songID string, index int) (State, error) {
	return e.command(sessionID, moveSongCmd{member: memberID, id: songID, index: index})
}

// SelectSong makes a song current (leader only): playback stops at 0 and
// the chart's tempo and time signature apply.
func (e *Engine) SelectSong(memberID, sessionID, songID string) (State, error) {
	return e.command(sessionID, selectSongCmd{member: memberID, id: songID})
}

// SetTimeSignature sets the session's time signature (leader only).
func (e *Engine) SetTimeSignature(memberID, sessionID string, beatsPerBar, beatUnit int) (State, error) {
	sig := TimeSignature{beatsPerBar, beatUnit}
	if err := validateTimeSignature(sig); err != nil {
		return State{}, err
	}
	return e.command(sessionID, setTimeSignatureCmd{member: memberID, sig: sig})
}

// SetCountIn sets the bars of count-in before a scheduled start, 0-4
// (leader only).
func (e *Engine) SetCountIn(memberID, sessionID string, bars int) (State, error) {
	if bars < 0 || bars > MaxCountInBars {
		return State{}, newError(protocol.CodeInvalidPayload, "bars must be a whole number from 0 to %d, got %d", MaxCountInBars, bars)
	}
	return e.command(sessionID, setCountInCmd{member: memberID, bars: bars})
}

// GetSong returns a song with its chart, exactly as it was added (any
// member).
func (e *Engine) GetSong(memberID, sessionID, songID string) (Song, error) {
	if err := ValidateSessionID(sessionID); err != nil {
		return Song{}, err
	}
	s := e.lookup(sessionID)
	if s == nil {
		return Song{}, notInSession(sessionID)
	}
	song, err := s.song(memberID, songID)
	if err != nil || song.ChordPro != "" {
		return song, err
	}
	// A copy rebuilt from the shared store has no chart texts; the store
	// has them (loaded outside the session lock).
	cl, ok := e.store.(store.ChartLoader)
	if !ok {
		return song, nil
	}
	ctx, cancel := storeCtx()
	defer cancel()
	text, found, err := cl.LoadChart(ctx, sessionID, song.SongID, song.Version)
	if err == nil && !found {
		// This copy lags behind a change that replaced or removed the
		// chart; the stored record says which version is current.
		var rec store.SessionRecord
		var ok bool
		if rec, ok, err = e.store.Load(ctx, sessionID); err == nil && ok {
			i := slices.IndexFunc(rec.Songs, func(g store.Song) bool { return g.SongID == song.SongID })
			if i < 0 {
				return Song{}, songNotFound(song.SongID)
			}
			g := songFromRecord(rec.Songs[i])
			song.SongSummary = g.summary()
			text, found, err = cl.LoadChart(ctx, sessionID, g.id, g.version)
		}
	}
	switch {
	case err != nil:
		e.log.Warn("loading a chart failed", "session", sessionID, "song", song.SongID, "err", err)
		return Song{}, newError(protocol.CodeInternal, "the song store is unavailable; try again")
	case !found:
		return Song{}, newError(protocol.CodeInternal, "the chart of %s is missing from the store", song.SongID)
	}
	song.ChordPro = text
	return song, nil
}

func (s *session) song(memberID, songID string) (Song, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Song{}, notInSession(s.st.id)
	}
	if _, err := requireMember(&s.st, memberID); err != nil {
		return Song{}, err
	}
	i := s.st.lib.find(songID)
	if i < 0 {
		return Song{}, songNotFound(songID)
	}
	g := &s.st.lib.songs[i]
	return Song{SongSummary: g.summary(), ChordPro: g.text}, nil
}
