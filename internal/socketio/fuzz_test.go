package socketio

import (
	"errors"
	"testing"
)

// FuzzDecode feeds arbitrary packets to the decoder and the event
// splitter. Whatever the input, they must return a packet or a
// *DecodeError, never panic, and an accepted EVENT must name a valid
// event.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`0`, `0{"pid":"a","offset":"1"}`, `0/admin,`, `1`,
		`2["join_session",{"sessionId":"band"}]`, `212["clock_sync",{"t0":1.5}]`,
		`2["play"]`, `2[]`, `2[1]`, `2["x",{"a":[[[[[[1]]]]]]}]`, `31["ok"]`,
		`51-["x",{"_placeholder":true,"num":0}]`, `2["a",{"b":"\"]}"}]`, `2/x,9[""]`,
		"2[\"a\",\"\\ud800\"]", `2["join_session",{`, `9`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodePacket(data)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a *DecodeError", err)
			}
			return
		}
		if p.Type == PacketEvent {
			name, _, err := splitEvent(p.Data)
			if err == nil && !validEventName(name) {
				t.Fatalf("accepted invalid event name %q", name)
			}
		}
	})
}
