//go:build linux

package socketio

import (
	"testing"
	"time"

	"github.com/gobwas/ws"
)

type disconnect struct {
	reason      string
	willRecover bool
}

func disconnectServer(t *testing.T) (*Server, string, chan *Conn, chan disconnect) {
	t.Helper()
	gone := make(chan disconnect, 4)
	s, url, conns := abuseServer(t, Options{Recovery: NewMemoryRecovery(time.Minute, 100, 1<<20),
		OnDisconnect: func(_ *Conn, reason string, willRecover bool) { gone <- disconnect{reason, willRecover} }})
	return s, url, conns, gone
}

func waitDisconnect(t *testing.T, gone chan disconnect) disconnect {
	t.Helper()
	select {
	case d := <-gone:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("OnDisconnect never ran")
		return disconnect{}
	}
}

// A client's DISCONNECT ends the socket for good: the reason is Socket.IO's,
// and its session is not kept for recovery.
func TestClientDisconnect(t *testing.T) {
	_, url, conns, gone := disconnectServer(t)
	cl, _, pid := connectAs(t, url, nil)
	c := connected(t, conns)
	if err := cl.send(0x81, []byte("41")); err != nil {
		t.Fatal(err)
	}
	if d := waitDisconnect(t, gone); d.reason != ReasonClientDisconnect || d.willRecover {
		t.Fatalf("disconnect %+v, want %q without recovery", d, ReasonClientDisconnect)
	}
	<-c.Done()
	if code := cl.closeCode(5 * time.Second); code != 1000 {
		t.Fatalf("close code %d, want 1000", code)
	}
	if _, ok, _ := c.srv.opts.Recovery.Take(t.Context(), pid); ok {
		t.Fatal("a client's own disconnect left its session for recovery")
	}
}

// A transport drop (no DISCONNECT) keeps the session for recovery.
func TestTransportCloseIsRecoverable(t *testing.T) {
	_, url, conns, gone := disconnectServer(t)
	cl, _, _ := connectAs(t, url, nil)
	connected(t, conns)
	_ = cl.nc.Close()
	if d := waitDisconnect(t, gone); d.reason != ReasonTransportClose || !d.willRecover {
		t.Fatalf("disconnect %+v, want %q with recovery", d, ReasonTransportClose)
	}
}

// Disconnect from the server sends Socket.IO's DISCONNECT, then the close
// frame, after what was queued before it; the client will not reconnect on
// its own, and the session is not kept.
func TestServerDisconnect(t *testing.T) {
	_, url, conns, gone := disconnectServer(t)
	cl, _, _ := connectAs(t, url, nil)
	c := connected(t, conns)
	if err := c.Emit("bye", map[string]string{"why": "kicked"}); err != nil {
		t.Fatal(err)
	}
	c.Disconnect()
	if name, arg, _ := cl.event(); name != "bye" || arg != `{"why":"kicked"}` {
		t.Fatalf("first got %s %s, want the event queued before Disconnect", name, arg)
	}
	if p := cl.text(5 * time.Second); p != "41" {
		t.Fatalf("got %q, want the DISCONNECT packet 41", p)
	}
	op, body := cl.next(5 * time.Second)
	if op != ws.OpClose || len(body) < 2 || int(body[0])<<8|int(body[1]) != 1000 {
		t.Fatalf("after DISCONNECT: op %v % x, want close 1000", op, body)
	}
	if d := waitDisconnect(t, gone); d.reason != ReasonServerDisconnect || d.willRecover {
		t.Fatalf("disconnect %+v, want %q without recovery", d, ReasonServerDisconnect)
	}
}
