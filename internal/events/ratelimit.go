package events

import (
	"time"

	"golang.org/x/time/rate"
)

// violationDecay is how long a socket must stay within its limit before
// its violation count starts over, so a device that once burst does not
// carry the mark forever.
const violationDecay = time.Minute

// limiter is one socket's token bucket: max events per window, refilled
// continuously, with a burst of max.
//
// A violation is an episode, not an event: the first refused event of a
// window counts and is reported; the rest of that window's refusals are
// dropped silently, so a flood cannot make the server flood back.
//
// Only the socket's reading goroutine uses it, so it needs no lock.
type limiter struct {
	window     time.Duration
	bucket     *rate.Limiter
	violations int
	episodeEnd time.Time
	lastRefuse time.Time
}

type verdict struct {
	ok         bool
	notify     bool // first refusal of an episode: tell the client
	violations int
	retryAfter time.Duration
}

func newLimiter(window time.Duration, max int) *limiter {
	if window <= 0 {
		window = time.Second
	}
	if max <= 0 {
		max = 100
	}
	return &limiter{window: window, bucket: rate.NewLimiter(rate.Limit(float64(max)/window.Seconds()), max)}
}

func (l *limiter) allow(now time.Time) verdict {
	if l.bucket.AllowN(now, 1) {
		return verdict{ok: true}
	}
	if !l.lastRefuse.IsZero() && now.Sub(l.lastRefuse) > violationDecay {
		l.violations = 0
	}
	l.lastRefuse = now
	v := verdict{}
	if now.After(l.episodeEnd) {
		l.violations++
		l.episodeEnd = now.Add(l.window)
		v.notify = true
	}
	v.violations = l.violations
	tokens := l.bucket.TokensAt(now)
	v.retryAfter = time.Duration((1 - tokens) / float64(l.bucket.Limit()) * float64(time.Second))
	if v.retryAfter < time.Millisecond {
		v.retryAfter = time.Millisecond
	}
	return v
}
