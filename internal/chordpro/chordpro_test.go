package chordpro

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

const wonderwall = `{title: Lights Come On}
{artist: The Band}
{key: Am}
{tempo: 96}
{time: 6/8}
# not shown
{c: Intro, softly}
[Am7]Lights come [D]on

{start_of_chorus: Chorus}
And [G]all the [Em]roads
{end_of_chorus}
{sot}
e|--0--[x]--|
{eot}
{sov}
Plain [unclosed line
{eov}
`

func TestParseMetaAndStructure(t *testing.T) {
	s, err := Parse(wonderwall)
	if err != nil {
		t.Fatal(err)
	}
	if s.Title != "Lights Come On" || s.Artist != "The Band" || s.Key != "Am" || s.Tempo != 96 || s.BeatsPerBar != 6 || s.BeatUnit != 8 {
		t.Fatalf("meta = %+v", s)
	}
	var kinds []string
	for _, sec := range s.Sections {
		kinds = append(kinds, sec.Kind)
	}
	if want := []string{KindNone, KindChorus, KindTab, KindVerse}; !reflect.DeepEqual(kinds, want) {
		t.Fatalf("sections %q, want %q", kinds, want)
	}
	intro := s.Sections[0].Lines
	if intro[0].Kind != LineComment || intro[0].Text != "Intro, softly" {
		t.Fatalf("comment line = %+v", intro[0])
	}
	want := []Segment{{"Am7", "Lights come "}, {"D", "on"}}
	if !reflect.DeepEqual(intro[1].Segments, want) {
		t.Fatalf("segments = %+v, want %+v", intro[1].Segments, want)
	}
	if s.Sections[1].Label != "Chorus" {
		t.Fatalf("chorus label %q", s.Sections[1].Label)
	}
	if tab := s.Sections[2].Lines[0]; tab.Kind != LineTab || tab.Text != "e|--0--[x]--|" {
		t.Fatalf("tab lines are verbatim, got %+v", tab)
	}
	if v := s.Sections[3].Lines[0].Segments; len(v) != 1 || v[0].Lyric != "Plain [unclosed line" {
		t.Fatalf("an unclosed bracket is lyrics, got %+v", v)
	}
}

func TestParseShortFormsAndFirstWins(t *testing.T) {
	s, err := Parse("{t:First}\r\n{title: Second}\r\n{soc}\r\n[C]la\r\n{eoc}\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if s.Title != "First" || s.Sections[0].Kind != KindChorus {
		t.Fatalf("got %+v", s)
	}
	if s.Tempo != 0 || s.BeatsPerBar != 0 {
		t.Fatalf("absent tempo and time must be zero, got %+v", s)
	}
}

func TestParseRefusals(t *testing.T) {
	for name, chart := range map[string]string{
		"no title":    "[C]la la\n{artist: x}",
		"empty title": "{title:   }",
		"bad tempo":   "{title: x}\n{tempo: fast}",
		"zero tempo":  "{title: x}\n{tempo: 0}",
		"bad time":    "{title: x}\n{time: 3}",
		"bad time 2":  "{title: x}\n{time: a/4}",
	} {
		_, err := Parse(chart)
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("%s: got %v, want a *Error", name, err)
		}
	}
}

// FuzzParse: whatever the text, Parse returns a song with a title or an
// *Error, never panics, and every lyric and chord it returns is a piece of
// the input.
func FuzzParse(f *testing.F) {
	for _, s := range []string{wonderwall, "{t}", "{title: x}\n[", "{title:x}\n[]]][[", "{", "}{", "{title: a}\n{time: 99999999999999999999/4}", "\uFEFF{t:x}\n{sot}\n{eoc}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		s, err := Parse(text)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *Error", err)
			}
			if _, merr := ParseMeta(text); merr == nil || merr.Error() != err.Error() {
				t.Fatalf("ParseMeta error %v, Parse error %v", merr, err)
			}
			return
		}
		if s.Title == "" {
			t.Fatal("accepted a chart without a title")
		}
		m, merr := ParseMeta(text)
		if merr != nil || m.Title != s.Title || m.Artist != s.Artist || m.Key != s.Key || m.Tempo != s.Tempo ||
			m.BeatsPerBar != s.BeatsPerBar || m.BeatUnit != s.BeatUnit || len(m.Sections) != 0 {
			t.Fatalf("ParseMeta = %+v, %v; Parse = %+v", m, merr, s)
		}
		for _, sec := range s.Sections {
			for _, l := range sec.Lines {
				for _, seg := range l.Segments {
					if !strings.Contains(text, seg.Chord) || !strings.Contains(text, seg.Lyric) {
						t.Fatalf("segment %+v is not from the input", seg)
					}
				}
			}
		}
		if utf8.ValidString(text) && !utf8.ValidString(s.Title) {
			t.Fatal("title is not valid UTF-8 from valid input")
		}
	})
}

// BenchmarkParse64KB parses a chart at the server's size limit: every
// add_song and update_song pays it, before the leader check.
func BenchmarkParse64KB(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(wonderwall)
	for sb.Len() < 64<<10-64 {
		sb.WriteString("[Am7]Lights come [D]on and [G]all the [Em]roads\n")
	}
	text := sb.String()
	for name, parse := range map[string]func(string) (*Song, error){"Parse": Parse, "ParseMeta": ParseMeta} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parse(text); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
