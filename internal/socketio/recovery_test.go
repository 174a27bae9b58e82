//go:build linux

package socketio

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// recoveryServer serves a server with memory recovery keeping at most
// ring packets, whose sockets join "band" on connect.
func recoveryServer(t *testing.T, ring int) (*Server, string, chan *Conn) {
	t.Helper()
	conns := make(chan *Conn, 16)
	s := testServer(t, Options{Recovery: NewMemoryRecovery(time.Minute, ring, 1<<20), OnConnect: func(c *Conn) {
		if !c.Recovered() {
			c.Join("band")
		}
		conns <- c
	}})
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, hs.URL, conns
}

// connectAs opens a socket and sends CONNECT with auth (nil for none); it
// returns the client and the CONNECT reply's sid and pid.
func connectAs(t *testing.T, url string, auth any) (*rawClient, string, string) {
	t.Helper()
	cl := dialRaw(t, url, false)
	if p := cl.text(5 * time.Second); p[0] != '0' {
		t.Fatalf("no open packet: %q", p)
	}
	pkt := []byte("40")
	if auth != nil {
		a, _ := json.Marshal(auth)
		pkt = append(pkt, a...)
	}
	if err := cl.send(0x81, pkt); err != nil {
		t.Fatal(err)
	}
	var reply struct{ SID, PID string }
	p := cl.text(5 * time.Second)
	if !strings.HasPrefix(p, "40{") || json.Unmarshal([]byte(p[2:]), &reply) != nil {
		t.Fatalf("CONNECT reply %q", p)
	}
	return cl, reply.SID, reply.PID
}

// event reads the next event and returns its name, argument and offset.
func (c *rawClient) event() (name, arg, offset string) {
	c.t.Helper()
	p := c.text(5 * time.Second)
	var args []json.RawMessage
	if !strings.HasPrefix(p, "42[") || json.Unmarshal([]byte(p[2:]), &args) != nil || len(args) < 2 {
		c.t.Fatalf("not an event with an argument: %q", p)
	}
	_ = json.Unmarshal(args[0], &name)
	if len(args) > 2 {
		_ = json.Unmarshal(args[2], &offset)
	}
	return name, string(args[1]), offset
}

// dropped closes the client's TCP connection abruptly and waits until the
// server has saved its session.
func dropped(t *testing.T, cl *rawClient, c *Conn) {
	t.Helper()
	_ = cl.nc.Close()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not notice the drop")
	}
}

// A client that drops and comes back with its pid and last offset resumes
// as the same socket, in its rooms, and first receives what it missed, in
// order, then live events.
func TestRecoveryReplaysMissedEvents(t *testing.T) {
	s, url, conns := recoveryServer(t, 100)
	cl, sid, pid := connectAs(t, url, nil)
	c := connected(t, conns)
	if err := s.Broadcast("band", "state", map[string]int{"v": 1}); err != nil {
		t.Fatal(err)
	}
	_, arg, offset := cl.event()
	if arg != `{"v":1}` || offset == "" {
		t.Fatalf("recorded event %s with offset %q", arg, offset)
	}
	dropped(t, cl, c)
	for v := 2; v <= 3; v++ {
		if err := s.Broadcast("band", "state", map[string]int{"v": v}); err != nil {
			t.Fatal(err)
		}
	}

	cl2, sid2, pid2 := connectAs(t, url, map[string]string{"pid": pid, "offset": offset})
	c2 := connected(t, conns)
	if sid2 != sid || pid2 != pid || !c2.Recovered() || c2.ReplaySkipped() {
		t.Fatalf("came back as %s/%s (recovered=%v), want %s/%s", sid2, pid2, c2.Recovered(), sid, pid)
	}
	for v := 2; v <= 3; v++ {
		_, arg, off := cl2.event()
		if want := `{"v":` + string(rune('0'+v)) + `}`; arg != want || off == "" {
			t.Fatalf("replayed %s (offset %q), want %s", arg, off, want)
		}
	}
	if err := s.Broadcast("band", "state", map[string]int{"v": 4}); err != nil {
		t.Fatal(err)
	}
	if _, arg, _ := cl2.event(); arg != `{"v":4}` {
		t.Fatalf("after the replay got %s, want the live {\"v\":4}: the socket is not back in its room", arg)
	}
}

// When what the client missed has already left the ring, a replay would
// have a gap: the client gets a fresh socket instead (a new id, no
// replay) and the application sends it a fresh snapshot.
func TestRecoveryGapGetsAFreshSocket(t *testing.T) {
	s, url, conns := recoveryServer(t, 2)
	cl, sid, pid := connectAs(t, url, nil)
	c := connected(t, conns)
	if err := s.Broadcast("band", "state", map[string]int{"v": 1}); err != nil {
		t.Fatal(err)
	}
	_, _, offset := cl.event()
	dropped(t, cl, c)
	for v := 2; v <= 5; v++ { // the ring keeps 2: v=2 is gone
		if err := s.Broadcast("band", "state", map[string]int{"v": v}); err != nil {
			t.Fatal(err)
		}
	}
	cl2, sid2, pid2 := connectAs(t, url, map[string]string{"pid": pid, "offset": offset})
	c2 := connected(t, conns)
	if sid2 == sid || pid2 == pid || c2.Recovered() {
		t.Fatalf("recovered across a gap: %s/%s, recovered=%v", sid2, pid2, c2.Recovered())
	}
	// The fresh socket joined the room like a new one and gets live
	// events only: nothing of the gap's edge is replayed.
	if err := s.Broadcast("band", "state", map[string]int{"v": 6}); err != nil {
		t.Fatal(err)
	}
	if _, arg, _ := cl2.event(); arg != `{"v":6}` {
		t.Fatalf("fresh socket got %s first, want the live {\"v\":6}", arg)
	}
}
