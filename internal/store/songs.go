package store

import (
	"context"
	"slices"
)

// Library is the durable part of a session's songs (docs/protocol.md): the setlist with each chart's text, the current song, and the
// session's time signature and count-in. It is embedded in SessionRecord,
// so songs are written, replicated and expired with their session. Every
// field is omitted when empty, so a record written before songs existed
// reads as an empty library with the defaults.
type Library struct {
	Songs   []Song `json:"songs,omitempty"`
	SongID  string `json:"songId,omitempty"`
	SongSeq uint64 `json:"songSeq,omitempty"` // last song number handed out
	// BeatsPerBar and BeatUnit are 0 in a record from before songs: 4/4.
	BeatsPerBar int `json:"beatsPerBar,omitempty"`
	BeatUnit    int `json:"beatUnit,omitempty"`
	// CountInBars is nil in a record from before songs: the default.
	CountInBars *int `json:"countInBars,omitempty"`
}

// Song is one chart of a session's setlist: its text as added, and what
// was parsed from it.
type Song struct {
	SongID      string  `json:"songId"`
	Title       string  `json:"title"`
	Artist      string  `json:"artist,omitempty"`
	Key         string  `json:"key,omitempty"`
	Tempo       float64 `json:"tempo,omitempty"`       // 0: the chart names none
	BeatsPerBar int     `json:"beatsPerBar,omitempty"` // 0: the chart names none
	BeatUnit    int     `json:"beatUnit,omitempty"`
	Version     uint64  `json:"version"`
	ChordPro    string  `json:"chordpro"`
}

// Clone returns a copy that shares no mutable memory with l.
func (l Library) Clone() Library {
	l.Songs = slices.Clone(l.Songs)
	if l.CountInBars != nil {
		n := *l.CountInBars
		l.CountInBars = &n
	}
	return l
}

// ChartLoader is implemented by a Shared store that keeps chart texts apart
// from the session record (Redis): records it returns or publishes carry
// songs without ChordPro, and the engine asks for a chart's text when a
// member wants it.
type ChartLoader interface {
	// LoadChart returns the text of version of song songID; found is
	// false when the store does not have it.
	LoadChart(ctx context.Context, sessionID, songID string, version uint64) (text string, found bool, err error)
}
