package engine_test

import (
	"fmt"
	"syscall"
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

// BenchmarkSeek50x8 measures one leader's seek, the fanout scenario's
// command, in the memory mode: 50 sessions of 8 members, each seek on the
// next session, through the whole pipeline to the Outbox calls. Run with
// -benchmem.
func BenchmarkSeek50x8(b *testing.B) { benchSeek(b, 50, 0) }

// BenchmarkSeek625x8 is the same at the fanout scenario's large shape and
// rate: 625 sessions, each seeking every 250 ms of the clock the engine
// and its store share. At that rate the store's log holds seconds, not
// microseconds, of each session's history, as it does under the load
// tool, so what the log keeps alive for the GC is in the figure.
func BenchmarkSeek625x8(b *testing.B) { benchSeek(b, 625, 250*time.Millisecond) }

// benchSeek runs seeks round the sessions, advancing the clock by every
// so that each session seeks once per every (0: the clock stands still).
func benchSeek(b *testing.B, sessions int, every time.Duration) {
	clk := enginetest.NewFakeClock(t0)
	st := store.NewMemoryWith(store.MemoryOptions{Now: clk.Now})
	e := engine.New(engine.Config{MaxSessions: sessions}, clk, nopOutbox{}, st, nil)
	for i := range sessions {
		id := fmt.Sprintf("s%d", i)
		for m := range 8 {
			if _, err := e.Join(fmt.Sprintf("%s-m%d", id, m), engine.JoinRequest{SessionID: id}); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := e.Play(id+"-m0", id, 0); err != nil {
			b.Fatal(err)
		}
	}
	ids := make([]string, sessions)
	for i := range ids {
		ids[i] = fmt.Sprintf("s%d", i)
	}
	step := every / time.Duration(sessions)
	b.ReportAllocs()
	cpu := processCPU()
	i := 0
	for b.Loop() {
		id := ids[i%sessions]
		if _, err := e.Seek(id+"-m0", id, float64(i%100000)); err != nil {
			b.Fatal(err)
		}
		if step > 0 {
			clk.Advance(step)
		}
		i++
	}
	// The machine is shared: CPU time per seek (the whole process's,
	// garbage collection included) is steadier than wall time.
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
