package events

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/protocol"
)

func TestDecodeRefusesEveryMalformedPayload(t *testing.T) {
	tests := []struct {
		name, data, code, msg string
	}{
		{"no payload", ``, "INVALID_PAYLOAD", "expects an object payload, got nothing"},
		{"null", `null`, "INVALID_PAYLOAD", "got null"},
		{"array", `[1,2]`, "INVALID_PAYLOAD", "got array"},
		{"string", `"band"`, "INVALID_PAYLOAD", "got string"},
		{"number", `42`, "INVALID_PAYLOAD", "got number"},
		{"tempo as string", `{"sessionId":"b","tempo":"120"}`, "INVALID_PAYLOAD", "tempo must be a number, got string"},
		{"session id as number", `{"sessionId":5,"tempo":120}`, "INVALID_PAYLOAD", "sessionId must be a string, got number"},
		{"huge", `{"sessionId":"` + strings.Repeat("x", maxEventPayload) + `"}`, "PAYLOAD_TOO_LARGE", "at most 16384"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p tempoPayload
			var data json.RawMessage
			if tt.data != "" {
				data = json.RawMessage(tt.data)
			}
			err := decode("set_tempo", data, &p)
			var ee *engine.Error
			if !errors.As(err, &ee) {
				t.Fatalf("decode(%s) = %v, want an *engine.Error", tt.data, err)
			}
			if ee.Code != tt.code || !strings.Contains(ee.Message, tt.msg) {
				t.Fatalf("decode(%s) = %s %q, want %s containing %q", tt.data, ee.Code, ee.Message, tt.code, tt.msg)
			}
		})
	}
	var p tempoPayload
	if err := decode("set_tempo", json.RawMessage(`{"sessionId":"b","tempo":120.5,"extra":true}`), &p); err != nil || *p.Tempo != 120.5 || *p.SessionID != "b" {
		t.Fatalf("a valid payload was refused: %v", err)
	}
}

func TestLimiterReportsOnceAWindowAndCountsViolations(t *testing.T) {
	start := time.Unix(1000, 0)
	l := newLimiter(time.Second, 5)
	for i := 0; i < 5; i++ {
		if v := l.allow(start); !v.ok {
			t.Fatalf("event %d of the burst refused", i)
		}
	}
	v := l.allow(start)
	if v.ok || !v.notify || v.violations != 1 || v.retryAfter <= 0 || v.retryAfter > 200*time.Millisecond {
		t.Fatalf("first refusal = %+v, want refused, notified, 1 violation, retry within 200ms", v)
	}
	if v := l.allow(start.Add(time.Millisecond)); v.ok || v.notify {
		t.Fatalf("second refusal in the same window = %+v, want refused silently", v)
	}
	// The bucket refills at 5/s: 200 ms later one event passes.
	if v := l.allow(start.Add(201 * time.Millisecond)); !v.ok {
		t.Fatal("refilled token refused")
	}
	// A flood in a later window is a second violation.
	l.allow(start.Add(1500 * time.Millisecond))
	for i := 0; i < 10; i++ {
		l.allow(start.Add(1500 * time.Millisecond))
	}
	v = l.allow(start.Add(2600 * time.Millisecond))
	for v.ok {
		v = l.allow(start.Add(2600 * time.Millisecond))
	}
	if v.violations != 3 {
		t.Fatalf("violations = %d, want 3", v.violations)
	}
	// A minute of calm forgets them.
	later := start.Add(2 * time.Minute)
	for v = l.allow(later); v.ok; v = l.allow(later) {
	}
	if v.violations != 1 {
		t.Fatalf("violations after a calm minute = %d, want 1", v.violations)
	}
}

// The mobile app sends a latency probe every 2.5 s and a heartbeat every
// 5 s; at the default 100 events per second they never come near it, and
// even a limit of two events per second (a probe and a heartbeat landing
// together) leaves room for them.
func TestMobileCadenceNeverLimited(t *testing.T) {
	l := newLimiter(time.Second, 2)
	start := time.Unix(0, 0)
	for ms := 0; ms < 10*60*1000; ms += 2500 {
		if v := l.allow(start.Add(time.Duration(ms) * time.Millisecond)); !v.ok {
			t.Fatalf("probe at %d ms refused", ms)
		}
		if ms%5000 == 0 {
			if v := l.allow(start.Add(time.Duration(ms)*time.Millisecond + 10*time.Millisecond)); !v.ok {
				t.Fatalf("heartbeat at %d ms refused", ms)
			}
		}
	}
}

// Every event of the protocol's list is handled, and nothing else is: an
// event added to protocol.ClientEvents without a handler, or a handler for
// an event the list (and so the SDK and the e2e suite) does not know,
// fails here.
func TestEveryClientEventHasOneHandler(t *testing.T) {
	got := slices.Sorted(maps.Keys((&Handlers{}).handlers()))
	want := slices.Sorted(slices.Values(protocol.ClientEvents))
	if !slices.Equal(got, want) {
		t.Fatalf("handled events %v\nprotocol.ClientEvents %v", got, want)
	}
}
