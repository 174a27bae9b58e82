//go:build linux

package socketio

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// next reads the next frame the server sent, unmasked, as gobwas/ws reads
// it.
func (c *rawClient) next(within time.Duration) (ws.OpCode, []byte) {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(within))
	h, err := ws.ReadHeader(c.br)
	if err != nil {
		c.t.Fatalf("reading a frame header: %v", err)
	}
	if h.Masked || h.Length > 1<<20 {
		c.t.Fatalf("the server sent a masked or oversized frame: %+v", h)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.br, p); err != nil {
		c.t.Fatalf("reading a frame's payload: %v", err)
	}
	return h.OpCode, p
}

// text reads frames up to the next Engine.IO text message, skipping pings.
func (c *rawClient) text(within time.Duration) string {
	c.t.Helper()
	for {
		op, p := c.next(within)
		if op == ws.OpText && string(p) != "2" {
			return string(p)
		}
	}
}

// Every refusal is the status, code and message engine.io gives, so
// socket.io-client reports what it knows, and OnReject names it for the
// metrics.
func TestHandshakeRefusals(t *testing.T) {
	var rejected []string
	s := testServer(t, Options{
		CheckOrigin: func(o string) bool { return o != "https://evil.example" },
		OnReject:    func(r string) { rejected = append(rejected, r) },
	})
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	upgrade := http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	for _, tc := range []struct {
		name, method, query string
		header              http.Header
		status, code        int
		message, reason     string
	}{
		{"polling", "GET", "EIO=4&transport=polling", upgrade, 400, 0, "Transport unknown", "transport"},
		{"Engine.IO 3", "GET", "EIO=3&transport=websocket", upgrade, 400, 5, "Unsupported protocol version", "protocol_version"},
		{"session id", "GET", "EIO=4&transport=websocket&sid=abc", upgrade, 400, 1, "Session ID unknown", "other"},
		{"POST", "POST", "EIO=4&transport=websocket", upgrade, 400, 2, "Bad handshake method", "protocol_version"},
		{"no upgrade", "GET", "EIO=4&transport=websocket", nil, 400, 3, "Bad request", "protocol_version"},
		{"origin", "GET", "EIO=4&transport=websocket", http.Header{"Origin": {"https://evil.example"}, "Upgrade": {"websocket"}}, 403, 4, "Forbidden", "origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rejected = nil
			req, _ := http.NewRequest(tc.method, hs.URL+"/socket.io/?"+tc.query, nil)
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || body.Code != tc.code || body.Message != tc.message {
				t.Fatalf("got %d %+v, want %d {code:%d message:%s}", resp.StatusCode, body, tc.status, tc.code, tc.message)
			}
			if len(rejected) != 1 || rejected[0] != tc.reason {
				t.Fatalf("OnReject got %v, want [%s]", rejected, tc.reason)
			}
		})
	}
	// A draining server sends new clients elsewhere.
	s.draining.Store(true)
	if code := upgradeStatus(t, hs.URL); code != http.StatusServiceUnavailable {
		t.Fatalf("upgrade while draining: %d, want 503", code)
	}
}

// The Engine.IO open packet carries the session's timings, and the
// Socket.IO CONNECT is answered with the socket id the server registers
// (and, with recovery on, the private id the client will present).
func TestOpenAndConnect(t *testing.T) {
	s, url, conns := abuseServer(t, Options{PingInterval: 7 * time.Second, PingTimeout: 3 * time.Second, MaxPayload: 5000,
		Recovery: NewMemoryRecovery(time.Minute, 100, 1<<20)})
	cl := dialRaw(t, url, false)
	var open struct {
		SID          string   `json:"sid"`
		Upgrades     []string `json:"upgrades"`
		PingInterval int      `json:"pingInterval"`
		PingTimeout  int      `json:"pingTimeout"`
		MaxPayload   int      `json:"maxPayload"`
	}
	p := cl.text(5 * time.Second)
	if p[0] != '0' || json.Unmarshal([]byte(p[1:]), &open) != nil {
		t.Fatalf("first message %q is not an Engine.IO open packet", p)
	}
	if open.SID == "" || open.Upgrades == nil || len(open.Upgrades) != 0 || open.PingInterval != 7000 || open.PingTimeout != 3000 || open.MaxPayload != 5000 {
		t.Fatalf("open packet %s", p)
	}
	if err := cl.send(0x81, []byte("40")); err != nil {
		t.Fatal(err)
	}
	var reply struct{ SID, PID string }
	p = cl.text(5 * time.Second)
	if !strings.HasPrefix(p, "40{") || json.Unmarshal([]byte(p[2:]), &reply) != nil || reply.SID == "" || reply.PID == "" {
		t.Fatalf("CONNECT reply %q, want 40{sid,pid}", p)
	}
	c := connected(t, conns)
	if c.ID() != reply.SID || reply.SID == open.SID || reply.PID == reply.SID {
		t.Fatalf("socket id %q, CONNECT reply %+v, Engine.IO sid %q", c.ID(), reply, open.SID)
	}
	if got, ok := s.Conn(reply.SID); !ok || got != c {
		t.Fatal("the connected socket is not registered under its id")
	}
	// Another namespace is refused by name, the socket stays.
	if err := cl.send(0x81, []byte("40/admin,")); err != nil {
		t.Fatal(err)
	}
	if p := cl.text(5 * time.Second); p != `44/admin,{"message":"Invalid namespace"}` {
		t.Fatalf("CONNECT to /admin answered %q", p)
	}
}
