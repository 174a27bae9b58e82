package engine_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/engine/enginetest"
	"github.com/bandsync/bandsync/internal/store"
)

// BenchmarkCommandWithSetlist measures what a setlist adds to every
// session command: a set_tempo, its snapshot encoded once as the
// transport does, in a session with 0 or 100 songs (3 KB charts). Run with
// -benchmem and compare the two.
func BenchmarkCommandWithSetlist(b *testing.B) {
	for _, songs := range []int{0, 100} {
		b.Run(fmt.Sprintf("songs=%d", songs), func(b *testing.B) {
			e := engine.New(engine.Config{}, enginetest.NewFakeClock(t0), nopOutbox{}, store.NewMemory(), nil)
			if _, err := e.Join("a", engine.JoinRequest{SessionID: "s"}); err != nil {
				b.Fatal(err)
			}
			body := make([]byte, 3000)
			for i := range body {
				body[i] = 'a' + byte(i%26)
			}
			for i := range songs {
				if _, _, err := e.AddSong("a", "s", fmt.Sprintf("{title: Song %d}\n{tempo: 100}\n%s", i, body)); err != nil {
					b.Fatal(err)
				}
			}
			tempo := 100.0
			b.ReportAllocs()
			for b.Loop() {
				tempo = 300 - tempo // alternate between 100 and 200: every call changes
				st, err := e.SetTempo("a", "s", tempo)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := json.Marshal(st); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
