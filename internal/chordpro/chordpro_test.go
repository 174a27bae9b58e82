package chordpro

import (
	"errors"
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

func TestParseMeta(t *testing.T) {
	s, err := ParseMeta(wonderwall)
	if err != nil {
		t.Fatal(err)
	}
	want := Song{Title: "Lights Come On", Artist: "The Band", Key: "Am", Tempo: 96, BeatsPerBar: 6, BeatUnit: 8}
	if *s != want {
		t.Fatalf("meta = %+v, want %+v", *s, want)
	}
}

func TestParseShortFormsAndFirstWins(t *testing.T) {
	s, err := ParseMeta("{t:First}\r\n{title: Second}\r\n{soc}\r\n[C]la\r\n{eoc}\r\n{tempo: 90 BPM}\r\n{tempo: 100}")
	if err != nil {
		t.Fatal(err)
	}
	if s.Title != "First" || s.Tempo != 90 {
		t.Fatalf("got %+v, want the first title and tempo", s)
	}
	if s.BeatsPerBar != 0 || s.Artist != "" {
		t.Fatalf("absent directives must be zero, got %+v", s)
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
		_, err := ParseMeta(chart)
		var pe *Error
		if !errors.As(err, &pe) {
			t.Errorf("%s: got %v, want a *Error", name, err)
		}
	}
}

// FuzzParse: whatever the text, ParseMeta returns a song with a title
// taken from the input or an *Error, and never panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{wonderwall, "{t}", "{title: x}\n[", "{title:x}\n[]]][[", "{", "}{", "{title: a}\n{time: 99999999999999999999/4}", "\uFEFF{t:x}\n{sot}\n{eoc}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseMeta(text)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *Error", err)
			}
			return
		}
		if s.Title == "" || !strings.Contains(text, s.Title) {
			t.Fatalf("title %q is empty or not from the input", s.Title)
		}
		if utf8.ValidString(text) && !utf8.ValidString(s.Title) {
			t.Fatal("title is not valid UTF-8 from valid input")
		}
	})
}

// BenchmarkParse64KB reads a chart at the server's size limit: every
// add_song and update_song pays it, before the leader check.
func BenchmarkParse64KB(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(wonderwall)
	for sb.Len() < 64<<10-64 {
		sb.WriteString("[Am7]Lights come [D]on and [G]all the [Em]roads\n")
	}
	text := sb.String()
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseMeta(text); err != nil {
			b.Fatal(err)
		}
	}
}
