package socketio

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"

	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/wsframe"
)

// openPacket is the Engine.IO open packet, the first message a client gets.
func (c *Conn) openPacket(sid string) []byte {
	var b bytes.Buffer
	b.WriteByte(eioOpen)
	_ = json.NewEncoder(&b).Encode(map[string]any{
		"sid":          sid,
		"upgrades":     []string{},
		"pingInterval": c.srv.opts.PingInterval.Milliseconds(),
		"pingTimeout":  c.srv.opts.PingTimeout.Milliseconds(),
		"maxPayload":   c.srv.opts.MaxPayload,
	})
	return bytes.TrimRight(b.Bytes(), "\n")
}

// ServeHTTP answers /socket.io/ requests: WebSocket handshakes, and the
// errors Engine.IO gives every other request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	// The checks and their order follow engine.io's verify() and
	// handshake(), so clients see the answers they know.
	switch {
	case q.Get("transport") != "websocket":
		s.refuse(w, http.StatusBadRequest, 0, "Transport unknown")
		return
	case q.Get("EIO") != "4":
		s.refuse(w, http.StatusBadRequest, 5, "Unsupported protocol version")
		return
	case q.Get("sid") != "":
		s.refuse(w, http.StatusBadRequest, 1, "Session ID unknown")
		return
	case r.Method != http.MethodGet:
		s.refuse(w, http.StatusBadRequest, 2, "Bad handshake method")
		return
	case !headerHasToken(r.Header, "Upgrade", "websocket"):
		s.refuse(w, http.StatusBadRequest, 3, "Bad request")
		return
	case s.opts.CheckOrigin != nil && !s.opts.CheckOrigin(r.Header.Get("Origin")):
		s.refuse(w, http.StatusForbidden, 4, "Forbidden")
		return
	case s.draining.Load():
		s.refuse(w, http.StatusServiceUnavailable, 4, "Server shutting down")
		return
	}

	addrKey, refusal := s.admit(r.RemoteAddr)
	if refusal != "" {
		s.refuseBusy(w, refusal)
		return
	}
	admitted := false
	defer func() {
		if !admitted {
			s.release(addrKey)
		}
	}()

	ext := wsflate.Extension{Parameters: wsflate.Parameters{ServerNoContextTakeover: true, ClientNoContextTakeover: true}}
	up := ws.HTTPUpgrader{Timeout: s.opts.WriteTimeout}
	if !s.opts.DisableCompression {
		up.Negotiate = ext.Negotiate
	}
	nc, rw, _, err := up.Upgrade(r, w)
	if err != nil {
		s.stats.rejected.Add(1)
		s.opts.Logger.Debug("websocket upgrade failed", "err", err, "remote", r.RemoteAddr)
		if nc != nil {
			_ = nc.Close()
		}
		return
	}
	_, deflate := ext.Accepted()
	// The HTTP server's read and write timeouts were set on the
	// connection for the request; a WebSocket keeps its own.
	_ = nc.SetDeadline(time.Time{})

	now := time.Now()
	c := &Conn{srv: s, nc: nc, deflate: deflate, remote: r.RemoteAddr, addrKey: addrKey, admitted: true, closedCh: make(chan struct{}), created: now}
	admitted = true
	c.lastRead.Store(now.UnixNano())
	c.initRaw()
	s.stats.active.Add(1)
	s.stats.total.Add(1)
	// Until its CONNECT the socket is in no registry the heartbeat sweep
	// walks, so it gets a timer of its own.
	time.AfterFunc(s.opts.ConnectTimeout, func() {
		if !c.connected.Load() {
			c.close(ReasonPingTimeout, closeFrame(1008, "no Socket.IO CONNECT"))
		}
	})
	c.enqueueControl(newFrame(wsframe.OpText, c.openPacket(randomID())))
	if n := rw.Reader.Buffered(); n > 0 {
		pre, _ := rw.Reader.Peek(n)
		used, stop := c.consume(pre)
		if stop {
			return
		}
		c.pending = bytes.Clone(pre[used:])
	}
	// The HTTP server's buffers and this goroutine are released now; an
	// idle connection costs a few small structs.
	if s.poller != nil && s.poller.add(c) {
		return
	}
	go c.serve()
}

// serve reads the connection with a goroutine of its own, where the
// event-driven reader is not available. A panic in it closes this
// connection only.
func (c *Conn) serve() {
	defer func() {
		if v := recover(); v != nil {
			c.srv.opts.Logger.Error("panic in connection", "panic", v, "stack", string(debug.Stack()))
			c.close(ReasonTransportError, closeFrame(1011, "internal error"))
		}
	}()
	src := io.Reader(c.nc)
	if c.pending != nil {
		src = io.MultiReader(bytes.NewReader(c.pending), c.nc)
		c.pending = nil
	}
	c.readBlocking(src)
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		if bytes.Contains(bytes.ToLower([]byte(v)), []byte(token)) {
			return true
		}
	}
	return false
}

func (s *Server) refuse(w http.ResponseWriter, status, code int, msg string) {
	s.refuseAs(w, rejectReason(code, status), status, code, msg)
}

// refuseAs answers a refused handshake in engine.io's error shape and
// reports it under reason, one of protocol.RejectReasons.
func (s *Server) refuseAs(w http.ResponseWriter, reason string, status, code int, msg string) {
	s.stats.rejected.Add(1)
	if s.opts.OnReject != nil {
		s.opts.OnReject(reason)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg})
}

// rejectReason names a refused handshake for the metrics.
func rejectReason(code, status int) string {
	switch {
	case status == http.StatusServiceUnavailable:
		return protocol.RejectDraining
	case code == 0:
		return protocol.RejectTransport
	case code == 4:
		return protocol.RejectOrigin
	case code == 5 || code == 2 || code == 3:
		return protocol.RejectProtocol
	}
	return protocol.RejectOther
}

// randomID returns 20 URL-safe characters from 15 random bytes, like
// Socket.IO's ids.
func randomID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
