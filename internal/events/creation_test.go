package events

import (
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/protocol"
)

// One socket may start a few sessions, one address a dozen bands' worth,
// and an address's squatting does not touch another address's allowance.
func TestSessionCreationLimits(t *testing.T) {
	l := newCreationLimits()
	now := time.Unix(1000, 0)
	sock := newSocketCreateLimit()
	for i := range socketCreateBurst {
		if err := l.allow(sock, "10.0.0.1:1000", now); err != nil {
			t.Fatalf("creation %d refused: %v", i+1, err)
		}
	}
	if err := l.allow(sock, "10.0.0.1:1000", now); err == nil {
		t.Fatal("one socket created more than its allowance at once")
	} else if e, ok := err.(*engine.Error); !ok || e.Code != protocol.CodeRateLimited {
		t.Fatalf("refusal %v, want RATE_LIMITED", err)
	}
	// Twelve sockets behind one address share the address's allowance.
	created := socketCreateBurst
	for range 12 {
		s := newSocketCreateLimit()
		for l.allow(s, "10.0.0.1:2000", now) == nil {
			created++
		}
	}
	if created != addrCreateBurst {
		t.Fatalf("one address created %d sessions at once, want %d", created, addrCreateBurst)
	}
	if err := l.allow(newSocketCreateLimit(), "10.0.0.2:1000", now); err != nil {
		t.Fatalf("a band from another address was refused: %v", err)
	}
	if err := l.allow(newSocketCreateLimit(), "10.0.0.1:3000", now.Add(addrCreateEvery)); err != nil {
		t.Fatalf("the address's allowance did not refill: %v", err)
	}
	// A same-host reverse proxy makes every client loopback: no shared
	// allowance there, only the socket's.
	for i := range 2 * addrCreateBurst {
		if err := l.allow(newSocketCreateLimit(), "127.0.0.1:4000", now); err != nil {
			t.Fatalf("loopback creation %d refused: %v", i+1, err)
		}
	}
}
