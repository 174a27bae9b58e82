// Package chordpro parses the part of the ChordPro chart format that band
// apps exchange (docs/protocol.md): the meta directives {title}/{t},
// {artist}, {key}, {tempo} and {time}; comments {comment}/{c} (and the
// italic and boxed variants); the verse, chorus, bridge and tab
// environments with their short forms; and chords in brackets inline with
// the lyrics. Anything else is kept readable rather than refused: an
// unknown directive is skipped and a bracket that never closes is lyrics,
// because a chart that renders imperfectly on stage beats one the band
// cannot load. Only what a server must trust is an error: a missing title,
// and a {tempo} or {time} that is not a number or a fraction.
package chordpro

import (
	"fmt"
	"strconv"
	"strings"
)

// Song is a parsed chart.
type Song struct {
	Title  string
	Artist string
	Key    string
	// Tempo is the {tempo} in beats per minute; 0 when the chart has none.
	Tempo float64
	// BeatsPerBar and BeatUnit are the {time} signature; 0 when absent.
	BeatsPerBar int
	BeatUnit    int
	Sections    []Section
}

// Section kinds. Lines outside any environment are in a KindNone section.
const (
	KindNone   = ""
	KindVerse  = "verse"
	KindChorus = "chorus"
	KindBridge = "bridge"
	KindTab    = "tab"
)

// Section is a run of lines: an environment ({start_of_chorus} ...
// {end_of_chorus}) or the lines between environments.
type Section struct {
	Kind  string
	Label string // the environment's label: {start_of_verse: Verse 2}
	Lines []Line
}

// Line kinds.
const (
	LineLyrics  = "lyrics"  // Segments hold chords and lyrics
	LineComment = "comment" // Text is the comment
	LineTab     = "tab"     // Text is the line verbatim
	LineEmpty   = "empty"
)

// Line is one rendered line of a section.
type Line struct {
	Kind     string
	Text     string
	Segments []Segment
}

// Segment is a chord and the lyrics sung from it until the next chord;
// Chord is "" for lyrics before the first chord of a line.
type Segment struct {
	Chord string
	Lyric string
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

// environment directives: name -> (kind, starts).
var environments = map[string]struct {
	kind  string
	start bool
}{
	"start_of_verse": {KindVerse, true}, "sov": {KindVerse, true},
	"end_of_verse": {KindVerse, false}, "eov": {KindVerse, false},
	"start_of_chorus": {KindChorus, true}, "soc": {KindChorus, true},
	"end_of_chorus": {KindChorus, false}, "eoc": {KindChorus, false},
	"start_of_bridge": {KindBridge, true}, "sob": {KindBridge, true},
	"end_of_bridge": {KindBridge, false}, "eob": {KindBridge, false},
	"start_of_tab": {KindTab, true}, "sot": {KindTab, true},
	"end_of_tab": {KindTab, false}, "eot": {KindTab, false},
}

// Parse parses a chart. The first {title} (and first of each meta
// directive) wins, as ChordPro readers do.
func Parse(text string) (*Song, error) { return parse(text, false) }

// ParseMeta is Parse without the sections: the meta directives and the
// same refusals, for a caller that stores the chart as text and needs only
// what it says about the song. It allocates almost nothing, where Parse
// builds every line of the chart.
func ParseMeta(text string) (*Song, error) { return parse(text, true) }

func parse(text string, metaOnly bool) (*Song, error) {
	p := parser{song: &Song{}, metaOnly: metaOnly}
	rest := strings.TrimPrefix(text, "\uFEFF")
	for n := 1; ; n++ {
		raw, more, found := strings.Cut(rest, "\n")
		if err := p.line(n, strings.TrimRight(raw, "\r")); err != nil {
			return nil, err
		}
		if !found {
			break
		}
		rest = more
	}
	p.closeSection()
	if p.song.Title == "" {
		return nil, &Error{Msg: "the chart has no {title} directive (or it is empty)"}
	}
	return p.song, nil
}

type parser struct {
	song     *Song
	cur      Section
	hasMeta  map[string]bool
	metaOnly bool // skip the sections (ParseMeta)
}

// closeSection ends the current section. Blank lines between
// environments are spacing, not a section of their own.
func (p *parser) closeSection() {
	if p.metaOnly {
		return
	}
	blank := true
	for _, l := range p.cur.Lines {
		blank = blank && l.Kind == LineEmpty
	}
	if !blank || p.cur.Kind != KindNone {
		p.song.Sections = append(p.song.Sections, p.cur)
	}
	p.cur = Section{}
}

func (p *parser) add(l Line) {
	if !p.metaOnly {
		p.cur.Lines = append(p.cur.Lines, l)
	}
}

func (p *parser) line(n int, s string) error {
	trimmed := strings.TrimSpace(s)
	if name, value, ok := directive(trimmed); ok {
		return p.directive(n, name, value)
	}
	if p.metaOnly {
		return nil
	}
	if p.cur.Kind == KindTab {
		p.add(Line{Kind: LineTab, Text: s})
		return nil
	}
	switch {
	case strings.HasPrefix(trimmed, "#"): // a ChordPro comment, not shown
	case trimmed == "":
		p.add(Line{Kind: LineEmpty})
	default:
		p.add(Line{Kind: LineLyrics, Segments: segments(s)})
	}
	return nil
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
	if env, ok := environments[name]; ok {
		if p.metaOnly {
			return nil
		}
		if env.start {
			p.closeSection()
			p.cur = Section{Kind: env.kind, Label: value}
		} else if p.cur.Kind == env.kind {
			p.closeSection()
		}
		return nil
	}
	switch name {
	case "comment", "c", "comment_italic", "ci", "comment_box", "cb", "highlight":
		p.add(Line{Kind: LineComment, Text: value})
		return nil
	}
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

// segments splits a lyrics line at its chords: "[Am7]Lights come [D]on".
func segments(s string) []Segment {
	var out []Segment
	cur := Segment{}
	for {
		open := strings.IndexByte(s, '[')
		if open < 0 {
			break
		}
		end := strings.IndexByte(s[open:], ']')
		if end < 0 {
			break // an unclosed bracket is lyrics
		}
		cur.Lyric += s[:open]
		if cur.Chord != "" || cur.Lyric != "" {
			out = append(out, cur)
		}
		cur = Segment{Chord: s[open+1 : open+end]}
		s = s[open+end+1:]
	}
	cur.Lyric += s
	return append(out, cur)
}

func short(s string) string {
	const limit = 40
	if len(s) > limit {
		return s[:limit] + "..."
	}
	return s
}
