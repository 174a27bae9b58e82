package httpapi

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/rs/cors"
	"github.com/unrolled/secure"

	"github.com/bandsync/bandsync/internal/protocol"
)

// helmetCSP is Helmet 7's default Content-Security-Policy, verbatim.
const helmetCSP = cspBase + ";upgrade-insecure-requests"

// cspBase is helmetCSP without upgrade-insecure-requests. Bands run the
// server on a rehearsal-room LAN over plain HTTP (http://192.168.1.20:3001):
// there that directive makes browsers fetch the web app's scripts and
// styles over https, which does not exist, and the page loads bare. So it
// is sent only on requests that arrived over HTTPS.
const cspBase = "default-src 'self';base-uri 'self';font-src 'self' https: data:;" +
	"form-action 'self';frame-ancestors 'self';img-src 'self' data:;object-src 'none';" +
	"script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline'"

// securityHeaders sets the headers Helmet 7 sets by default, so clients and
// scanners see the same response headers as from the original server.
// Behind a proxy (trustProxy), X-Forwarded-Proto tells whether the client
// used HTTPS.
func securityHeaders(next http.Handler, trustProxy bool) http.Handler {
	s := secure.New(secure.Options{
		ContentSecurityPolicy:         cspBase,
		CrossOriginOpenerPolicy:       "same-origin",
		CrossOriginResourcePolicy:     "same-origin",
		ReferrerPolicy:                "no-referrer",
		STSSeconds:                    15552000, // 180 days
		STSIncludeSubdomains:          true,
		ForceSTSHeader:                true, // Helmet sends it on plain HTTP too (TLS usually ends at a proxy)
		ContentTypeNosniff:            true,
		XDNSPrefetchControl:           "off",
		CustomFrameOptionsValue:       "SAMEORIGIN",
		XPermittedCrossDomainPolicies: "none",
		CustomBrowserXssValue:         "0", // the XSS auditor is gone and was itself exploitable
	})
	return s.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Helmet headers that unrolled/secure does not know.
		h := w.Header()
		h.Set("Origin-Agent-Cluster", "?1")
		h.Set("X-Download-Options", "noopen")
		if r.TLS != nil || (trustProxy && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")) {
			h.Set("Content-Security-Policy", helmetCSP)
		}
		next.ServeHTTP(w, r)
	}))
}

// newCORS mirrors the Express cors middleware configured with CORS_ORIGIN:
// "*" answers Access-Control-Allow-Origin: *, a list echoes a listed origin.
func newCORS(allowed string) *cors.Cors {
	opts := cors.Options{
		AllowedMethods: []string{http.MethodGet, http.MethodHead},
		AllowedHeaders: []string{"*"},
	}
	if a := strings.TrimSpace(allowed); a == "" || a == "*" {
		opts.AllowedOrigins = []string{"*"}
	} else {
		opts.AllowOriginFunc = func(origin string) bool { return OriginAllowed(allowed, origin) }
	}
	return cors.New(opts)
}

// OriginAllowed reports whether origin may connect under a CORS_ORIGIN value:
// "*" (or "") allows any origin; otherwise origin must equal, ignoring ASCII
// case, one entry of the comma-separated list. An empty origin is allowed
// because native mobile apps send no Origin header; browsers always do.
func OriginAllowed(allowed, origin string) bool {
	allowed = strings.TrimSpace(allowed)
	if origin == "" || allowed == "" || allowed == "*" {
		return true
	}
	for entry := range strings.SplitSeq(allowed, ",") {
		if strings.EqualFold(strings.TrimSpace(entry), origin) {
			return true
		}
	}
	return false
}

// recoverPanics turns a handler panic into a logged 500 instead of a dropped
// connection with a stack trace on stderr.
func recoverPanics(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tw := &trackingWriter{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v) // net/http's own way to abort a response silently
			}
			log.Error("panic in HTTP handler", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			if !tw.started {
				writeError(w, http.StatusInternalServerError, protocol.CodeInternal, "internal server error")
			}
		}()
		next.ServeHTTP(tw, r)
	})
}

// trackingWriter records whether a response has started, so a panic after
// that is not answered with a second, corrupt response. It forwards Hijack
// and Flush explicitly because the WebSocket upgrade on /socket.io/
// type-asserts http.Hijacker on the writer it is given.
type trackingWriter struct {
	http.ResponseWriter
	started bool
}

func (t *trackingWriter) WriteHeader(code int) {
	// 1xx responses are informational; the real response is still to come.
	if code >= 200 {
		t.started = true
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *trackingWriter) Write(b []byte) (int, error) {
	t.started = true
	return t.ResponseWriter.Write(b)
}

func (t *trackingWriter) Flush() {
	t.started = true
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (t *trackingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := t.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("httpapi: hijacking: %w", http.ErrNotSupported)
	}
	conn, rw, err := h.Hijack()
	if err == nil {
		t.started = true
	}
	return conn, rw, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (t *trackingWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }
