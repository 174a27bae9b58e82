package engine

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/bandsync/bandsync/internal/protocol"
)

// Limits of the session model.
const (
	MinTempo           = 1.0
	MaxTempo           = 300.0
	DefaultTempo       = 120.0
	MaxPositionMs      = 86_400_000.0
	MaxDelayMs         = 5000.0
	MaxMessageLen      = 500 // characters (runes), after stripping control characters
	MaxDisplayNameLen  = 50
	DefaultDisplayName = "Guest"

	RoleLeader   = "leader"
	RoleFollower = "follower"
)

// Error is a refused command. The engine always returns it as *Error, so
// callers use errors.As with a *Error target. It marshals as the error
// object of an ack: {code, message}.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func newError(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func fmtNum(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// quoteShort quotes s for an error message without echoing a huge input.
func quoteShort(s string) string {
	const limit = 80
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

// ValidateSessionID refuses an id that breaks the session-id rule
// (protocol.ValidSessionID) with an error naming the rule.
func ValidateSessionID(id string) error {
	if !protocol.ValidSessionID(id) {
		return newError(protocol.CodeInvalidSessionID,
			"sessionId must be 1-%d characters of A-Z, a-z, 0-9, '_' or '-', got %s", protocol.MaxSessionIDLen, quoteShort(id))
	}
	return nil
}

func finiteIn(v, lo, hi float64) bool {
	return !math.IsNaN(v) && !math.IsInf(v, 0) && v >= lo && v <= hi
}

func validateTempo(v float64) error {
	if !finiteIn(v, MinTempo, MaxTempo) {
		return newError(protocol.CodeInvalidPayload, "tempo must be a number from %s to %s, got %s",
			fmtNum(MinTempo), fmtNum(MaxTempo), fmtNum(v))
	}
	return nil
}

func validatePosition(v float64) error {
	if !finiteIn(v, 0, MaxPositionMs) {
		return newError(protocol.CodeInvalidPayload, "position must be a number of ms from 0 to %s (24 h), got %s",
			fmtNum(MaxPositionMs), fmtNum(v))
	}
	return nil
}

func validateDelay(v float64) error {
	if !finiteIn(v, 0, MaxDelayMs) {
		return newError(protocol.CodeInvalidPayload, "delayMs must be a number from 0 to %s, got %s",
			fmtNum(MaxDelayMs), fmtNum(v))
	}
	return nil
}

// stripControl drops control characters and replaces invalid UTF-8, so what
// members see is printable text.
func stripControl(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		// Bidi controls (U+202E and kin) make a name display as
		// something else in every member's list: a spoofing tool.
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return -1
		}
		return r
	}, s)
}

func normalizeMessage(s string) (string, error) {
	s = stripControl(s)
	if n := utf8.RuneCountInString(s); n > MaxMessageLen {
		return "", newError(protocol.CodeInvalidPayload, "message must be at most %d characters, got %d", MaxMessageLen, n)
	}
	return s, nil
}

func normalizeDisplayName(s string) (string, error) {
	s = strings.TrimSpace(stripControl(s))
	if s == "" {
		return DefaultDisplayName, nil
	}
	if n := utf8.RuneCountInString(s); n > MaxDisplayNameLen {
		return "", newError(protocol.CodeInvalidPayload, "displayName must be at most %d characters, got %d", MaxDisplayNameLen, n)
	}
	return s, nil
}

// validateRole accepts "leader" or "follower"; optional allows "" (join).
func validateRole(role string, optional bool) error {
	if role == RoleLeader || role == RoleFollower || optional && role == "" {
		return nil
	}
	return newError(protocol.CodeInvalidPayload, `role must be "leader" or "follower", got %s`, quoteShort(role))
}

func storeUnavailable() *Error {
	return newError(protocol.CodeStoreUnavailable,
		"the band's server is reconnecting to the other servers, so the change could not reach every member; try again in a moment")
}

func notInSession(sessionID string) *Error {
	return newError(protocol.CodeNotInSession, "you are not in session %q; send join_session first", sessionID)
}
