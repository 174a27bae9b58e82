// Package web serves BandSync's browser app from the binary: the band's web
// app at /, the server dashboard at /dashboard, the JavaScript SDK at
// /sdk/bandsync.js and the vendored socket.io-client browser build under
// /vendor/. Everything is embedded (go:embed); there is no build step at run
// time and nothing is loaded from another origin, so the pages work under
// the Helmet CSP every response carries (no inline scripts, no CDN).
//
// Mount it as httpapi.Options.Static:
//
//	api.Static = web.Handler()
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	sdkjs "github.com/bandsync/bandsync/sdk/js"
)

//go:embed assets/index.html assets/dashboard.html assets/static assets/vendor
var assets embed.FS

// sdkImport is the SDK's import of socket.io-client as published on npm; the
// browser copy imports the vendored build instead (relative to
// /sdk/bandsync.js, so the app also works under a path prefix).
const (
	sdkImport        = `from "socket.io-client"`
	sdkBrowserImport = `from "../vendor/socket.io.esm.min.js"`
)

// Cache policies. Pages revalidate on every load (a band must not run last
// week's app after an upgrade); scripts and styles may be reused for a few
// minutes; the vendored library changes only with its file.
const (
	cachePage   = "no-cache"
	cacheAsset  = "public, max-age=300"
	cacheVendor = "public, max-age=86400"
)

type asset struct {
	body         []byte
	gz           []byte // nil when compressing does not pay
	etag, gzEtag string
	contentType  string
	cacheControl string
}

type handler struct {
	files   map[string]*asset // URL path -> asset
	modTime time.Time
}

// Handler returns the handler for the web app's routes. Unknown paths get a
// JSON 404 like the API's.
func Handler() http.Handler {
	h, err := newHandler(assets)
	if err != nil {
		// The embedded files are part of the binary: this is a build defect.
		panic("web: " + err.Error())
	}
	return h
}

func newHandler(fsys fs.FS) (*handler, error) {
	h := &handler{files: map[string]*asset{}, modTime: time.Now()}
	add := func(urlPath, file, cache string, transform func([]byte) ([]byte, error)) error {
		b, err := fs.ReadFile(fsys, file)
		if err != nil {
			return err
		}
		if transform != nil {
			if b, err = transform(b); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
		}
		h.files[urlPath] = newAsset(b, contentType(file), cache)
		return nil
	}
	if err := add("/", "assets/index.html", cachePage, nil); err != nil {
		return nil, err
	}
	if err := add("/dashboard", "assets/dashboard.html", cachePage, nil); err != nil {
		return nil, err
	}
	sdk, err := browserSDK(sdkjs.Source)
	if err != nil {
		return nil, fmt.Errorf("sdk/js/bandsync.js: %w", err)
	}
	h.files["/sdk/bandsync.js"] = newAsset(sdk, "text/javascript; charset=utf-8", cacheAsset)
	for _, dir := range []struct{ dir, cache string }{{"static", cacheAsset}, {"vendor", cacheVendor}} {
		err := fs.WalkDir(fsys, "assets/"+dir.dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(p, ".md") {
				return err
			}
			return add("/"+strings.TrimPrefix(p, "assets/"), p, dir.cache, nil)
		})
		if err != nil {
			return nil, err
		}
	}
	return h, nil
}

// browserSDK rewrites the SDK's bare socket.io-client import to the
// vendored browser build, the one change between sdk/js/bandsync.js and
// /sdk/bandsync.js.
func browserSDK(src []byte) ([]byte, error) {
	if n := bytes.Count(src, []byte(sdkImport)); n != 1 {
		return nil, fmt.Errorf("want exactly one %s in the SDK, found %d", sdkImport, n)
	}
	return bytes.Replace(src, []byte(sdkImport), []byte(sdkBrowserImport), 1), nil
}

func newAsset(body []byte, ctype, cache string) *asset {
	sum := sha256.Sum256(body)
	a := &asset{body: body, contentType: ctype, cacheControl: cache, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
	if len(body) >= 512 && compressible(ctype) {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		_, _ = zw.Write(body)
		_ = zw.Close()
		if buf.Len() < len(body)*9/10 {
			a.gz = buf.Bytes()
			a.gzEtag = `"` + hex.EncodeToString(sum[:12]) + `-gz"`
		}
	}
	return a
}

func compressible(ctype string) bool {
	return strings.HasPrefix(ctype, "text/") || strings.Contains(ctype, "javascript") ||
		strings.Contains(ctype, "json") || strings.Contains(ctype, "svg")
}

func contentType(file string) string {
	switch path.Ext(file) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".json":
		return "application/json"
	case ".webmanifest":
		return "application/manifest+json"
	case ".png":
		return "image/png"
	default:
		return "text/plain; charset=utf-8"
	}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if p == "/dashboard/" {
		http.Redirect(w, r, "/dashboard", http.StatusMovedPermanently)
		return
	}
	a, ok := h.files[p]
	if !ok {
		notFound(w, p)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", r.Method+" is not allowed here")
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.contentType)
	hd.Set("Cache-Control", a.cacheControl)
	body, etag := a.body, a.etag
	if a.gz != nil {
		hd.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			body, etag = a.gz, a.gzEtag
			hd.Set("Content-Encoding", "gzip")
		}
	}
	hd.Set("ETag", etag)
	http.ServeContent(w, r, "", h.modTime, bytes.NewReader(body))
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip
// (a "gzip;q=0" refuses it).
func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
			continue
		}
		q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}

func notFound(w http.ResponseWriter, p string) {
	writeError(w, http.StatusNotFound, "NOT_FOUND", "no such file or endpoint: "+p)
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message = code, message
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
