package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestRoutes(t *testing.T) {
	h := Handler()
	for _, tc := range []struct {
		path, ctype, cache, contains string
	}{
		{"/", "text/html; charset=utf-8", cachePage, "<title>BandSync</title>"},
		{"/dashboard", "text/html; charset=utf-8", cachePage, "Server dashboard"},
		{"/sdk/bandsync.js", "text/javascript; charset=utf-8", cacheAsset, `from "../vendor/socket.io.esm.min.js"`},
		{"/vendor/socket.io.esm.min.js", "text/javascript; charset=utf-8", cacheVendor, "Socket.IO v4.8.4"},
		{"/vendor/socket.io-client.LICENSE", "text/plain; charset=utf-8", cacheVendor, "MIT License"},
		{"/static/app.js", "text/javascript; charset=utf-8", cacheAsset, `from "../sdk/bandsync.js"`},
		{"/static/dashboard.js", "text/javascript; charset=utf-8", cacheAsset, "/metrics/history"},
		{"/static/app.css", "text/css; charset=utf-8", cacheAsset, "--accent"},
		{"/static/icon.svg", "image/svg+xml", cacheAsset, "<svg"},
	} {
		w := get(t, h, http.MethodGet, tc.path, nil)
		if w.Code != http.StatusOK {
			t.Errorf("GET %s: %d %s", tc.path, w.Code, w.Body.String())
			continue
		}
		if got := w.Header().Get("Content-Type"); got != tc.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.ctype)
		}
		if got := w.Header().Get("Cache-Control"); got != tc.cache {
			t.Errorf("GET %s: Cache-Control %q, want %q", tc.path, got, tc.cache)
		}
		if w.Header().Get("ETag") == "" {
			t.Errorf("GET %s: no ETag", tc.path)
		}
		if !strings.Contains(w.Body.String(), tc.contains) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
		}
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	h := Handler()
	for _, p := range []string{"/nope", "/static/nope.js", "/favicon.ico", "/index.html", "/vendor/README.md", "/sdk/", "/static/", "/../go.mod"} {
		w := get(t, h, http.MethodGet, p, nil)
		if w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, w.Code)
		}
		if !strings.Contains(w.Body.String(), `"code":"NOT_FOUND"`) {
			t.Errorf("GET %s: body %s", p, w.Body.String())
		}
	}
	w := get(t, h, http.MethodPost, "/", nil)
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d Allow=%q", w.Code, w.Header().Get("Allow"))
	}
	w = get(t, h, http.MethodHead, "/static/app.js", nil)
	if w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Errorf("HEAD: %d with %d body bytes", w.Code, w.Body.Len())
	}
	w = get(t, h, http.MethodGet, "/dashboard/", nil)
	if w.Code != http.StatusMovedPermanently || w.Header().Get("Location") != "/dashboard" {
		t.Errorf("GET /dashboard/: %d Location=%q", w.Code, w.Header().Get("Location"))
	}
}

func TestConditionalAndGzip(t *testing.T) {
	h := Handler()
	plain := get(t, h, http.MethodGet, "/vendor/socket.io.esm.min.js", nil)
	etag := plain.Header().Get("ETag")
	if w := get(t, h, http.MethodGet, "/vendor/socket.io.esm.min.js", map[string]string{"If-None-Match": etag}); w.Code != http.StatusNotModified {
		t.Errorf("If-None-Match with the current ETag: %d, want 304", w.Code)
	}
	gz := get(t, h, http.MethodGet, "/vendor/socket.io.esm.min.js", map[string]string{"Accept-Encoding": "br, gzip"})
	if gz.Header().Get("Content-Encoding") != "gzip" || gz.Header().Get("ETag") == etag {
		t.Fatalf("gzip variant: encoding %q etag %q", gz.Header().Get("Content-Encoding"), gz.Header().Get("ETag"))
	}
	if !strings.Contains(gz.Header().Get("Vary"), "Accept-Encoding") {
		t.Errorf("Vary: %q", gz.Header().Get("Vary"))
	}
	zr, err := gzip.NewReader(gz.Body)
	if err != nil {
		t.Fatal(err)
	}
	unz, _ := io.ReadAll(zr)
	if !bytes.Equal(unz, plain.Body.Bytes()) {
		t.Error("gzip body does not inflate to the plain body")
	}
	if gz.Body.Len() >= plain.Body.Len() {
		t.Errorf("gzip %d bytes, plain %d", gz.Body.Len(), plain.Body.Len())
	}
	if w := get(t, h, http.MethodGet, "/vendor/socket.io.esm.min.js", map[string]string{"Accept-Encoding": "gzip;q=0"}); w.Header().Get("Content-Encoding") != "" {
		t.Error("gzip;q=0 still got gzip")
	}
}

// The SDK served to browsers is sdk/js/bandsync.js with only its import
// rewritten.
func TestServedSDKIsTheSourceWithItsImportRewritten(t *testing.T) {
	src, err := os.ReadFile("../../sdk/js/bandsync.js")
	if err != nil {
		t.Fatal(err)
	}
	want, err := browserSDK(src)
	if err != nil {
		t.Fatal(err)
	}
	w := get(t, Handler(), http.MethodGet, "/sdk/bandsync.js", nil)
	if !bytes.Equal(w.Body.Bytes(), want) {
		t.Error("/sdk/bandsync.js is not the rewritten SDK")
	}
	if bytes.Contains(w.Body.Bytes(), []byte(`"socket.io-client"`)) {
		t.Error("the browser SDK still imports the bare specifier socket.io-client")
	}
	if _, err := browserSDK([]byte("no import here")); err == nil {
		t.Error("browserSDK accepted a file without the import")
	}
}

func TestVendoredChecksumMatchesREADME(t *testing.T) {
	b, err := fs.ReadFile(assets, "assets/vendor/socket.io.esm.min.js")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	readme, err := os.ReadFile("assets/vendor/README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), hex.EncodeToString(sum[:])) {
		t.Errorf("assets/vendor/README.md does not record the vendored file's sha256 %x", sum)
	}
	if !bytes.Contains(b, []byte("Socket.IO v4.8.4")) || !strings.Contains(string(readme), "4.8.4") {
		t.Error("vendored version and README disagree")
	}
}

var (
	inlineScript  = regexp.MustCompile(`(?is)<script(?:\s[^>]*)?>`)
	srcAttr       = regexp.MustCompile(`(?i)\ssrc\s*=`)
	inlineHandler = regexp.MustCompile(`(?i)<[^>]+\son[a-z]+\s*=`)
	jsURL         = regexp.MustCompile(`(?i)(href|src|action)\s*=\s*["']?\s*javascript:`)
	localRef      = regexp.MustCompile(`(?i)(?:href|src)\s*=\s*"(/[^"]*)"`)
	externalRef   = regexp.MustCompile(`(?i)(?:href|src)\s*=\s*"(?:https?:)?//`)
	importFrom    = regexp.MustCompile(`(?m)^\s*import\s[^"']*["']([^"']+)["']`)
)

// The pages must work under Helmet's CSP (script-src 'self';
// script-src-attr 'none'): no inline scripts or handlers, nothing from
// another origin, and every local reference must resolve.
func TestPagesFitTheCSP(t *testing.T) {
	h := Handler()
	for _, page := range []string{"/", "/dashboard"} {
		body := get(t, h, http.MethodGet, page, nil).Body.String()
		for _, tag := range inlineScript.FindAllString(body, -1) {
			if !srcAttr.MatchString(tag) {
				t.Errorf("%s: inline script %q", page, tag)
			}
		}
		if m := inlineHandler.FindString(body); m != "" {
			t.Errorf("%s: inline event handler in %q", page, m)
		}
		if jsURL.MatchString(body) {
			t.Errorf("%s: javascript: URL", page)
		}
		if m := externalRef.FindString(body); m != "" {
			t.Errorf("%s: reference to another origin: %q", page, m)
		}
		for _, m := range localRef.FindAllStringSubmatch(body, -1) {
			ref := strings.SplitN(m[1], "?", 2)[0]
			if w := get(t, h, http.MethodGet, ref, nil); w.Code != http.StatusOK && w.Code != http.StatusMovedPermanently {
				t.Errorf("%s references %s, which answers %d", page, ref, w.Code)
			}
		}
	}
	// Module imports between the served scripts resolve too.
	for _, script := range []string{"/static/app.js", "/static/dashboard.js", "/sdk/bandsync.js"} {
		body := get(t, h, http.MethodGet, script, nil).Body.String()
		for _, m := range importFrom.FindAllStringSubmatch(body, -1) {
			spec := m[1]
			if !strings.HasPrefix(spec, ".") && !strings.HasPrefix(spec, "/") {
				t.Errorf("%s imports the bare specifier %q, which a browser cannot resolve", script, spec)
				continue
			}
			ref := spec
			if strings.HasPrefix(spec, ".") {
				dir := script[:strings.LastIndex(script, "/")+1]
				ref = resolveRel(dir, spec)
			}
			if w := get(t, h, http.MethodGet, ref, nil); w.Code != http.StatusOK {
				t.Errorf("%s imports %s (%s): %d", script, spec, ref, w.Code)
			}
		}
	}
}

func resolveRel(dir, spec string) string {
	parts := strings.Split(strings.Trim(dir, "/"), "/")
	if parts[0] == "" {
		parts = nil
	}
	for _, seg := range strings.Split(spec, "/") {
		switch seg {
		case ".":
		case "..":
			if len(parts) > 0 {
				parts = parts[:len(parts)-1]
			}
		default:
			parts = append(parts, seg)
		}
	}
	return "/" + strings.Join(parts, "/")
}

func TestAcceptsGzip(t *testing.T) {
	for h, want := range map[string]bool{
		"":                  false,
		"gzip":              true,
		"deflate, gzip":     true,
		"GZIP;q=0.5":        true,
		"gzip;q=0":          false,
		"br":                false,
		"x-gzip":            false,
		"br;q=1, gzip; q=0": false,
	} {
		if got := acceptsGzip(h); got != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", h, got, want)
		}
	}
}
