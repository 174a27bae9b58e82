package engine

import "time"

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not started; it reports whether it
	// did. A callback that already started may still be waiting for a
	// session lock, so callbacks re-check that they are still current.
	Stop() bool
}

// Clock is the engine's source of time, replaced by a manual clock in tests.
// Now must carry a monotonic reading in production so derived positions are
// immune to wall-clock steps.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) Timer
}

type systemClock struct{}

// SystemClock returns the real clock.
func SystemClock() Clock { return systemClock{} }

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// epochMs is t on the wire: epoch milliseconds with a sub-ms fraction.
func epochMs(t time.Time) float64 { return float64(t.UnixNano()) / 1e6 }

// msDuration converts a (possibly fractional) millisecond count.
func msDuration(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }
