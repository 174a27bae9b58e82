package socketio

import (
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/wsframe"
)

// engineIO handles one Engine.IO packet, the content of one WebSocket
// message.
func (c *Conn) engineIO(op byte, data []byte) {
	if op == wsframe.OpBinary {
		c.reportError("", ErrBinaryUnsupported)
		return
	}
	if len(data) == 0 {
		c.reportError("", decodeErr("empty message"))
		return
	}
	switch data[0] {
	case eioPong:
		if sent := c.pingSent.Swap(0); sent != 0 && c.srv.opts.OnPong != nil {
			c.srv.opts.OnPong(c, time.Duration(time.Now().UnixNano()-sent))
		}
	case eioPing, eioNoop, eioUpgrade:
		// The read itself proved the client alive. Engine.IO 4 clients
		// do not send pings over WebSocket; no answer is owed.
	case eioClose:
		c.close(ReasonTransportClose, closeFrame(1000, ""))
	case eioMessage:
		c.packet(data[1:])
	default:
		c.reportError("", decodeErr("unknown Engine.IO packet type %q", data[0]))
	}
}

// packet handles one Socket.IO packet.
func (c *Conn) packet(data []byte) {
	p, err := DecodePacket(data)
	if err != nil {
		c.reportError("", err)
		return
	}
	if p.Namespace != defaultNamespace {
		// The answer echoes the namespace: a long one is not worth it.
		if p.Type == PacketConnect && len(p.Namespace) <= maxNamespaceEcho {
			c.enqueueControl(newFrame(wsframe.OpText, connectError(p.Namespace, "Invalid namespace")))
		}
		return
	}
	switch p.Type {
	case PacketConnect:
		if c.connected.Load() {
			return
		}
		c.srv.connect(c, p.Data)
	case PacketDisconnect:
		if c.connected.Load() {
			c.close(ReasonClientDisconnect, closeFrame(1000, ""))
		}
	case PacketEvent:
		if !c.connected.Load() {
			return // Socket.IO drops events sent before CONNECT
		}
		name, arg, err := splitEvent(p.Data)
		if err == errUnknownName {
			c.srv.dispatch(c, name, nil, p.ID)
			return
		}
		if err != nil {
			c.reportError(name, err)
			return
		}
		c.srv.dispatch(c, name, arg, p.ID)
		c.awaitWriter()
	case PacketAck:
		// The server asks for no acknowledgements yet; a stray one is harmless.
	}
}

// maxNamespaceEcho bounds the namespace a connect_error repeats back.
const maxNamespaceEcho = 256

func connectError(nsp, msg string) []byte {
	b := []byte{eioMessage, '0' + byte(PacketConnectError)}
	b = append(b, nsp...)
	b = append(b, ',')
	m, _ := json.Marshal(map[string]string{"message": msg})
	return append(b, m...)
}

// reportError tells the client about a refused packet.
func (c *Conn) reportError(event string, err error) {
	c.srv.stats.badPackets.Add(1)
	if c.srv.opts.OnPacketError != nil && c.connected.Load() {
		c.srv.opts.OnPacketError(c, event, err)
	}
}

// ackFunc builds the acknowledgement callback for a packet id; it answers
// at most once.
func (c *Conn) ackFunc(id int64) Ack {
	if id < 0 {
		return nil
	}
	var done atomic.Bool
	return func(payload any) {
		if !done.CompareAndSwap(false, true) {
			return
		}
		b, err := json.Marshal(payload)
		if err != nil {
			b = []byte(`{"ok":false,"error":{"code":"` + protocol.CodeInternal + `","message":"unencodable reply"}}`)
		}
		pkt := appendAck(make([]byte, 0, len(b)+24), id, b)
		c.enqueue(newFrame(wsframe.OpText, pkt))
	}
}

// connect accepts a Socket.IO CONNECT, resuming a dropped socket when the
// client presents a valid pid and offset.
func (s *Server) connect(c *Conn, auth json.RawMessage) {
	var a struct {
		PID    string `json:"pid"`
		Offset string `json:"offset"`
	}
	if auth != nil {
		_ = json.Unmarshal(auth, &a)
	}
	if a.PID != "" && s.opts.Recovery != nil && s.tryRecover(c, a.PID, a.Offset) {
		return
	}
	c.id = randomID()
	if s.opts.Recovery != nil {
		c.pid = randomID()
	}
	s.register(c)
	c.enqueueControl(newFrame(wsframe.OpText, connectReply(c.id, c.pid)))
	c.connected.Store(true)
	s.connected(c)
}

func connectReply(sid, pid string) []byte {
	b := []byte{eioMessage, '0' + byte(PacketConnect)}
	m := map[string]string{"sid": sid}
	if pid != "" {
		m["pid"] = pid
	}
	j, _ := json.Marshal(m)
	return append(b, j...)
}
