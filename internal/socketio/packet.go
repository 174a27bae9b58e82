package socketio

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Engine.IO v4 packet types, as the first byte of a text frame.
const (
	eioOpen    = '0'
	eioClose   = '1'
	eioPing    = '2'
	eioPong    = '3'
	eioMessage = '4'
	eioUpgrade = '5'
	eioNoop    = '6'
)

// PacketType is a Socket.IO v5 packet type.
type PacketType byte

// Socket.IO v5 packet types.
const (
	PacketConnect      PacketType = 0
	PacketDisconnect   PacketType = 1
	PacketEvent        PacketType = 2
	PacketAck          PacketType = 3
	PacketConnectError PacketType = 4
	PacketBinaryEvent  PacketType = 5
	PacketBinaryAck    PacketType = 6
)

// Limits on what a client may send inside one packet. They bound the work a
// single hostile frame can cause, whatever maxPayload allows.
const (
	maxJSONDepth     = 32
	maxEventNameLen  = 64
	maxNamespaceLen  = 256
	maxAckIDDigits   = 15 // stays below 2^53, the largest id a JavaScript client can count to
	defaultNamespace = "/"
)

// Packet is one decoded Socket.IO packet.
type Packet struct {
	Type      PacketType
	Namespace string
	// ID is the acknowledgement id, or -1 when the packet carries none.
	ID int64
	// Data is the packet's JSON payload, or nil when it has none.
	Data json.RawMessage
}

// DecodeError describes a packet the server refuses. The connection stays
// usable: the packet is ignored and the client is told why.
type DecodeError struct {
	Reason string
	// Event is the event name when it could be read, for the error report.
	Event string
}

func (e *DecodeError) Error() string { return "invalid packet: " + e.Reason }

func decodeErr(format string, args ...any) error {
	return &DecodeError{Reason: fmt.Sprintf(format, args...)}
}

// errUnknownName marks an event whose name no handler can have (empty,
// too long, or with characters outside the allowed set). It is answered
// like any unknown event, through the acknowledgement when one was asked.
var errUnknownName = &DecodeError{Reason: "event name must be 1-64 characters of letters, digits, '_', '-', ':' or '.'"}

// printable shortens a client-chosen name for error messages and logs.
func printable(s string) string {
	const max = 64
	out := make([]rune, 0, max)
	for _, r := range s {
		if len(out) == max {
			return string(out) + "…"
		}
		if r < 0x20 || r == 0x7f {
			r = '?'
		}
		out = append(out, r)
	}
	return string(out)
}

// ErrBinaryUnsupported is returned for binary Socket.IO packets: BandSync
// exchanges JSON only, and refusing attachments up front avoids buffering
// for placeholders that may never be filled.
var ErrBinaryUnsupported = &DecodeError{Reason: "binary packets are not supported"}

// DecodePacket parses the text of a Socket.IO packet (what follows the
// Engine.IO "4" message type):
//
//	<type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]
func DecodePacket(s []byte) (Packet, error) {
	p := Packet{ID: -1, Namespace: defaultNamespace}
	if len(s) == 0 {
		return p, decodeErr("empty packet")
	}
	t := s[0]
	if t < '0' || t > '6' {
		return p, decodeErr("unknown packet type %q", t)
	}
	p.Type = PacketType(t - '0')
	if p.Type == PacketBinaryEvent || p.Type == PacketBinaryAck {
		return p, ErrBinaryUnsupported
	}
	i := 1
	if i < len(s) && s[i] == '/' {
		j := i
		for j < len(s) && s[j] != ',' {
			j++
		}
		if j-i > maxNamespaceLen {
			return p, decodeErr("namespace too long")
		}
		p.Namespace = string(s[i:j])
		if j < len(s) {
			j++ // the comma
		}
		i = j
	}
	start := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i > start {
		if i-start > maxAckIDDigits {
			return p, decodeErr("acknowledgement id too long")
		}
		id, err := strconv.ParseInt(string(s[start:i]), 10, 64)
		if err != nil {
			return p, decodeErr("bad acknowledgement id")
		}
		p.ID = id
	}
	if i < len(s) {
		data := s[i:]
		if err := checkJSON(data); err != nil {
			return p, err
		}
		p.Data = json.RawMessage(data)
	}
	switch p.Type {
	case PacketConnect:
		if p.Data != nil && p.Data[0] != '{' {
			return p, decodeErr("CONNECT payload must be an object")
		}
	case PacketEvent:
		if p.Data == nil || p.Data[0] != '[' {
			return p, decodeErr("EVENT payload must be an array")
		}
	case PacketAck:
		if p.ID < 0 {
			return p, decodeErr("ACK without id")
		}
		if p.Data == nil || p.Data[0] != '[' {
			return p, decodeErr("ACK payload must be an array")
		}
	case PacketDisconnect:
		if p.Data != nil {
			return p, decodeErr("DISCONNECT takes no payload")
		}
	case PacketConnectError:
		return p, decodeErr("CONNECT_ERROR is sent by servers only")
	}
	return p, nil
}

// checkJSON validates data as one JSON value nested at most maxJSONDepth
// deep. encoding/json alone would accept 10,000 levels and burn stack and
// time on a crafted frame; the depth scan is cheap and runs first.
func checkJSON(data []byte) error {
	depth := 0
	inString := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			depth++
			if depth > maxJSONDepth {
				return decodeErr("JSON nested deeper than %d levels", maxJSONDepth)
			}
		case ']', '}':
			depth--
		}
	}
	if !json.Valid(data) {
		return decodeErr("malformed JSON")
	}
	return nil
}

// splitEvent returns the event name and first argument of an EVENT
// packet's array. Extra arguments are ignored; a missing argument yields
// nil data, which handlers report as a missing payload.
func splitEvent(data json.RawMessage) (string, json.RawMessage, error) {
	var args []json.RawMessage
	if err := json.Unmarshal(data, &args); err != nil {
		return "", nil, decodeErr("malformed event array")
	}
	if len(args) == 0 {
		return "", nil, decodeErr("event without a name")
	}
	var name string
	if err := json.Unmarshal(args[0], &name); err != nil {
		return "", nil, decodeErr("event name must be a string")
	}
	if !validEventName(name) {
		return printable(name), nil, errUnknownName
	}
	if len(args) < 2 {
		return name, nil, nil
	}
	return name, args[1], nil
}

func validEventName(s string) bool {
	if len(s) == 0 || len(s) > maxEventNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == ':', c == '.':
		default:
			return false
		}
	}
	return true
}

// appendAck appends 43<id>[<payload>].
func appendAck(dst []byte, id int64, payload []byte) []byte {
	dst = append(dst, eioMessage, '0'+byte(PacketAck))
	dst = strconv.AppendInt(dst, id, 10)
	dst = append(dst, '[')
	dst = append(dst, payload...)
	return append(dst, ']')
}
