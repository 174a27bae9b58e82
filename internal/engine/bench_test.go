package engine_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/engine/enginetest"
	"github.com/bandsync/bandsync/internal/store"
)

// nopOutbox discards everything, so the benchmark measures the engine.
type nopOutbox struct{}

func (nopOutbox) JoinRoom(string, string)               {}
func (nopOutbox) LeaveRoom(string, string)              {}
func (nopOutbox) ToSession(string, string, any)         {}
func (nopOutbox) ToSessionVolatile(string, string, any) {}
func (nopOutbox) ToMember(string, string, any)          {}
func (nopOutbox) Disconnect(string)                     {}

// BenchmarkTick300Playing measures one tick over 300 playing sessions (plus
// 700 paused ones, which must cost nothing). Run with -benchmem.
func BenchmarkTick300Playing(b *testing.B) {
	clk := enginetest.NewFakeClock(t0)
	e := engine.New(engine.Config{MaxSessions: 2000}, clk, nopOutbox{}, store.NewMemory(), nil)
	for i := range 1000 {
		id := fmt.Sprintf("s%d", i)
		for m := range 4 {
			if _, err := e.Join(fmt.Sprintf("%s-m%d", id, m), engine.JoinRequest{SessionID: id}); err != nil {
				b.Fatal(err)
			}
		}
		if i < 300 {
			if _, err := e.Play(id+"-m0", id, 0); err != nil {
				b.Fatal(err)
			}
		}
	}
	if n := e.Stats().PlayingSessions; n != 300 {
		b.Fatalf("playing sessions = %d", n)
	}
	now := clk.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		now = now.Add(16 * time.Millisecond)
		e.Tick(now)
	}
}
