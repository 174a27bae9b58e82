package events

// The events of songs, setlists and handover (docs/protocol.md). Decoding and type checks live here; limits and permissions are the
// engine's.

import (
	"encoding/json"
	"math"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/socketio"
)

// maxChartPayload bounds the argument of add_song and update_song before
// decoding: a chart of engine.MaxChartBytes, even written entirely as
// \uXXXX escapes, fits. The chart itself is measured once decoded.
const maxChartPayload = 6*engine.MaxChartBytes + 4<<10

type (
	chartPayload struct {
		SessionID *string `json:"sessionId"`
		SongID    *string `json:"songId"`
		ChordPro  *string `json:"chordpro"`
	}
	songPayload struct {
		SessionID *string  `json:"sessionId"`
		SongID    *string  `json:"songId"`
		Index     *float64 `json:"index"`
	}
	timeSignaturePayload struct {
		SessionID   *string  `json:"sessionId"`
		BeatsPerBar *float64 `json:"beatsPerBar"`
		BeatUnit    *float64 `json:"beatUnit"`
	}
	countInPayload struct {
		SessionID *string  `json:"sessionId"`
		Bars      *float64 `json:"bars"`
	}
	transferPayload struct {
		SessionID *string `json:"sessionId"`
		SocketID  *string `json:"socketId"`
	}
)

func (h *Handlers) songHandlers() map[string]socketio.Handler {
	return map[string]socketio.Handler{
		protocol.EventAddSong:            h.addSong,
		protocol.EventUpdateSong:         h.updateSong,
		protocol.EventRemoveSong:         h.removeSong,
		protocol.EventMoveSong:           h.moveSong,
		protocol.EventSelectSong:         h.selectSong,
		protocol.EventGetSong:            h.getSong,
		protocol.EventSetTimeSignature:   h.setTimeSignature,
		protocol.EventSetCountIn:         h.setCountIn,
		protocol.EventTransferLeadership: h.transferLeadership,
	}
}

// missing returns the required-field error for the first nil field, in
// the order given as name, value pairs.
func missing(event string, fields ...any) error {
	for i := 0; i+1 < len(fields); i += 2 {
		if v := fields[i+1]; v == nil || isNilPtr(v) {
			return required(event, fields[i].(string))
		}
	}
	return nil
}

func isNilPtr(v any) bool {
	switch p := v.(type) {
	case *string:
		return p == nil
	case *float64:
		return p == nil
	}
	return false
}

// wholeNumber checks that a number field is an integer (1 and 1.0 alike).
func wholeNumber(event, field string, v float64) (int, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) || v != math.Trunc(v) {
		return 0, invalid("%s: %s must be a whole number, got %v", event, field, v)
	}
	// Out-of-range values keep their sign and stay out of range.
	return int(max(-1<<31, min(v, 1<<31))), nil
}

func (h *Handlers) addSong(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventAddSong
	var p chartPayload
	err := decodeLimit(ev, data, &p, maxChartPayload)
	if err == nil {
		err = missing(ev, "sessionId", p.SessionID, "chordpro", p.ChordPro)
	}
	if err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	song, st, err := h.eng.AddSong(c.ID(), *p.SessionID, *p.ChordPro)
	if err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	if ack != nil {
		ack(map[string]any{"ok": true, "song": song, "state": st})
	}
}

func (h *Handlers) updateSong(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventUpdateSong
	var p chartPayload
	err := decodeLimit(ev, data, &p, maxChartPayload)
	if err == nil {
		err = missing(ev, "sessionId", p.SessionID, "songId", p.SongID, "chordpro", p.ChordPro)
	}
	if err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	st, err := h.eng.UpdateSong(c.ID(), *p.SessionID, *p.SongID, *p.ChordPro)
	h.reply(c, ev, ack, st, err)
}

// songCommand decodes {sessionId, songId} and runs fn.
func (h *Handlers) songCommand(ev string, c *socketio.Conn, data json.RawMessage, ack socketio.Ack,
	fn func(member, session, song string) (engine.State, error)) {
	var p songPayload
	err := decode(ev, data, &p)
	if err == nil {
		err = missing(ev, "sessionId", p.SessionID, "songId", p.SongID)
	}
	if err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	st, err := fn(c.ID(), *p.SessionID, *p.SongID)
	h.reply(c, ev, ack, st, err)
}

func (h *Handlers) removeSong(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	h.songCommand(protocol.EventRemoveSong, c, data, ack, h.eng.RemoveSong)
}

func (h *Handlers) selectSong(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	h.songCommand(protocol.EventSelectSong, c, data, ack, h.eng.SelectSong)
}

func (h *Handlers) moveSong(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventMoveSong
	var p songPayload
	err := decode(ev, data, &p)
	if err == nil {
		err = missing(ev, "sessionId", p.SessionID, "songId", p.SongID, "index", p.Index)
	}
	var index int
	if err == nil {
		index, err = wholeNumber(ev, "index", *p.Index)
	}
	if err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	st, err := h.eng.MoveSong(c.ID(), *p.SessionID, *p.SongID, index)
	h.reply(c, ev, ack, st, err)
}

// getSong answers with the chart through the ack, or a `song` event to the
// sender when there is none.
func (h *Handlers) getSong(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventGetSong
	var p songPayload
	err := decode(ev, data, &p)
	if err == nil {
		err = missing(ev, "sessionId", p.SessionID, "songId", p.SongID)
	}
	var song engine.Song
	if err == nil {
		song, err = h.eng.GetSong(c.ID(), *p.SessionID, *p.SongID)
	}
	if err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	if ack != nil {
		ack(map[string]any{"ok": true, "song": song})
		return
	}
	_ = c.EmitReply(protocol.EventSong, song)
}

func (h *Handlers) setTimeSignature(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventSetTimeSignature
	var p timeSignaturePayload
	err := decode(ev, data, &p)
	if err == nil {
		err = missing(ev, "sessionId", p.SessionID, "beatsPerBar", p.BeatsPerBar, "beatUnit", p.BeatUnit)
	}
	var beats, unit int
	if err == nil {
		beats, err = wholeNumber(ev, "beatsPerBar", *p.BeatsPerBar)
	}
	if err == nil {
		unit, err = wholeNumber(ev, "beatUnit", *p.BeatUnit)
	}
	if err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	st, err := h.eng.SetTimeSignature(c.ID(), *p.SessionID, beats, unit)
	h.reply(c, ev, ack, st, err)
}

func (h *Handlers) setCountIn(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventSetCountIn
	var p countInPayload
	err := decode(ev, data, &p)
	if err == nil {
		err = missing(ev, "sessionId", p.SessionID, "bars", p.Bars)
	}
	var bars int
	if err == nil {
		bars, err = wholeNumber(ev, "bars", *p.Bars)
	}
	if err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	st, err := h.eng.SetCountIn(c.ID(), *p.SessionID, bars)
	h.reply(c, ev, ack, st, err)
}

func (h *Handlers) transferLeadership(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventTransferLeadership
	var p transferPayload
	err := decode(ev, data, &p)
	if err == nil {
		err = missing(ev, "sessionId", p.SessionID, "socketId", p.SocketID)
	}
	if err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	st, err := h.eng.TransferLeadership(c.ID(), *p.SessionID, *p.SocketID)
	h.reply(c, ev, ack, st, err)
}

// joined answers a join: the member's private token goes to this socket
// only, in a session_joined event that is never replayed on recovery and
// in the ack.
func (h *Handlers) joined(c *socketio.Conn, ack socketio.Ack, st engine.State, err error) {
	if err != nil {
		h.fail(c, protocol.EventJoinSession, ack, err)
		return
	}
	token := h.eng.MemberToken(c.ID(), st.SessionID)
	_ = c.EmitReply(protocol.EventSessionJoined, map[string]string{"sessionId": st.SessionID, "memberToken": token})
	if ack != nil {
		ack(map[string]any{"ok": true, "state": st, "memberToken": token})
	}
}
