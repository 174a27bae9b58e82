// Package chordpro reads what the server must know of a ChordPro chart:
// its meta directives {title}/{t}, {artist}, {key}, {tempo} and {time}.
// The server keeps a chart as the text the leader sent and never renders
// it; the web app draws the rest of the format (environments, comments,
// chords inline with the lyrics) in internal/web/assets/static/chordpro.js.
// Only what a server must trust is an error: a missing title, and a
// {tempo} or {time} that is not a number or a fraction. Every other line
// and directive is passed over, because a chart that renders imperfectly
// on stage beats one the band cannot load.
package chordpro

import (
	"fmt"
	"strconv"
	"strings"
)

// Song is what a chart says about its song.
type Song struct {
	Title  string
	Artist string
	Key    string
	// Tempo is the {tempo} in beats per minute; 0 when the chart has none.
	Tempo float64
	// BeatsPerBar and BeatUnit are the {time} signature; 0 when absent.
	BeatsPerBar int
	BeatUnit    int
}

// Error is a chart the parser refuses; Line is 1-based (0: the whole chart).
type Error struct {
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return e.Msg
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

// ParseMeta reads a chart's meta directives. The first {title} (and the
// first of each meta directive) wins, as ChordPro readers do. It allocates
// almost nothing: every add_song and update_song pays it.
func ParseMeta(text string) (*Song, error) {
	p := parser{song: &Song{}}
	rest := strings.TrimPrefix(text, "\uFEFF")
	for n := 1; ; n++ {
		raw, more, found := strings.Cut(rest, "\n")
		if name, value, ok := directive(strings.TrimSpace(strings.TrimRight(raw, "\r"))); ok {
			if err := p.directive(n, name, value); err != nil {
				return nil, err
			}
		}
		if !found {
			break
		}
		rest = more
	}
	if p.song.Title == "" {
		return nil, &Error{Msg: "the chart has no {title} directive (or it is empty)"}
	}
	return p.song, nil
}

type parser struct {
	song    *Song
	hasMeta map[string]bool
}

// directive splits "{name: value}" (or "{name value}", or "{name}").
func directive(s string) (name, value string, ok bool) {
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return "", "", false
	}
	inner := strings.TrimSpace(s[1 : len(s)-1])
	cut := strings.IndexAny(inner, ": \t")
	if cut < 0 {
		return strings.ToLower(inner), "", true
	}
	name, value = inner[:cut], strings.TrimSpace(inner[cut:])
	value = strings.TrimSpace(strings.TrimPrefix(value, ":"))
	return strings.ToLower(strings.TrimSpace(name)), value, true
}

func (p *parser) directive(n int, name, value string) error {
	if p.hasMeta[name] {
		return nil
	}
	switch name {
	case "title", "t":
		p.song.Title = value
		p.once("title", "t")
	case "artist":
		p.song.Artist = value
		p.once("artist")
	case "key":
		p.song.Key = value
		p.once("key")
	case "tempo":
		v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.ToLower(value), "bpm")), 64)
		if err != nil || !(v > 0) || v > 1e6 {
			return &Error{Line: n, Msg: fmt.Sprintf("{tempo} must be a number of beats per minute, got %q", short(value))}
		}
		p.song.Tempo = v
		p.once("tempo")
	case "time":
		num, den, ok := strings.Cut(value, "/")
		b, err1 := strconv.Atoi(strings.TrimSpace(num))
		u, err2 := strconv.Atoi(strings.TrimSpace(den))
		if !ok || err1 != nil || err2 != nil || b <= 0 || u <= 0 {
			return &Error{Line: n, Msg: fmt.Sprintf("{time} must be a fraction such as 3/4, got %q", short(value))}
		}
		p.song.BeatsPerBar, p.song.BeatUnit = b, u
		p.once("time")
	}
	return nil
}

func (p *parser) once(names ...string) {
	if p.hasMeta == nil {
		p.hasMeta = make(map[string]bool)
	}
	for _, n := range names {
		p.hasMeta[n] = true
	}
}

func short(s string) string {
	const limit = 40
	if len(s) > limit {
		return s[:limit] + "..."
	}
	return s
}
