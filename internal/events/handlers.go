package events

import (
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/socketio"
)

// Payloads. Pointer fields tell a missing field from a zero one.
type (
	sessionPayload struct {
		SessionID *string `json:"sessionId"`
	}
	joinPayload struct {
		SessionID   *string `json:"sessionId"`
		DisplayName *string `json:"displayName"`
		Role        *string `json:"role"`
		MemberToken *string `json:"memberToken"`
		// TickIntervalMs is how often this socket wants scroll_tick: 0
		// for none (a client that derives the position from the anchor),
		// N for at most one per N ms; absent keeps its current choice
		// (at first, every tick).
		TickIntervalMs *float64 `json:"tickIntervalMs"`
	}
	rolePayload struct {
		SessionID *string `json:"sessionId"`
		Role      *string `json:"role"`
	}
	tempoPayload struct {
		SessionID *string  `json:"sessionId"`
		Tempo     *float64 `json:"tempo"`
		TempoBpm  *float64 `json:"tempoBpm"`
	}
	playPayload struct {
		SessionID *string  `json:"sessionId"`
		DelayMs   *float64 `json:"delayMs"`
	}
	seekPayload struct {
		SessionID  *string  `json:"sessionId"`
		Position   *float64 `json:"position"`
		PositionMs *float64 `json:"positionMs"`
	}
	messagePayload struct {
		SessionID *string `json:"sessionId"`
		Message   *string `json:"message"`
	}
	timestampPayload struct {
		Timestamp       *float64 `json:"timestamp"`
		ClientTimestamp *float64 `json:"clientTimestamp"`
		SessionID       *string  `json:"sessionId"`
	}
	clockPayload struct {
		T0 *float64 `json:"t0"`
	}
	qualityPayload struct {
		SessionID *string  `json:"sessionId"`
		OffsetMs  *float64 `json:"offsetMs"`
		RttMs     *float64 `json:"rttMs"`
		JitterMs  *float64 `json:"jitterMs"`
	}
)

// sessionOf decodes a payload whose only required field is sessionId.
func sessionOf(event string, data json.RawMessage) (string, error) {
	var p sessionPayload
	if err := decode(event, data, &p); err != nil {
		return "", err
	}
	if p.SessionID == nil {
		return "", required(event, "sessionId")
	}
	return *p.SessionID, nil
}

func (h *Handlers) joinSession(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventJoinSession
	var p joinPayload
	if err := decode(ev, data, &p); err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	if p.SessionID == nil {
		h.fail(c, ev, ack, required(ev, "sessionId"))
		return
	}
	if p.TickIntervalMs != nil && !(*p.TickIntervalMs >= 0 && *p.TickIntervalMs <= maxTickIntervalMs) {
		h.fail(c, ev, ack, invalid("%s: tickIntervalMs must be a number from 0 (no ticks) to %d ms, got %s",
			ev, maxTickIntervalMs, strconv.FormatFloat(*p.TickIntervalMs, 'f', -1, 64)))
		return
	}
	st, err := h.eng.Join(c.ID(), engine.JoinRequest{SessionID: *p.SessionID, DisplayName: deref(p.DisplayName), Role: deref(p.Role),
		MemberToken: deref(p.MemberToken), MayCreate: func() error { return h.mayCreate(c) }})
	if err == nil && p.TickIntervalMs != nil {
		c.SetTickInterval(tickChoice(*p.TickIntervalMs))
	}
	h.joined(c, ack, st, err)
}

// maxTickIntervalMs bounds a slower tick rate: beyond a minute a client
// is better served by none.
const maxTickIntervalMs = 60_000

// tickChoice maps tickIntervalMs to the transport's setting: 0 is none.
func tickChoice(ms float64) time.Duration {
	if ms == 0 {
		return socketio.NoTicks
	}
	return time.Duration(ms * float64(time.Millisecond))
}

func (h *Handlers) leaveSession(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventLeaveSession
	id, err := sessionOf(ev, data)
	if err == nil {
		err = h.eng.Leave(c.ID(), id)
	}
	if err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	if ack != nil {
		ack(map[string]any{"ok": true})
	}
}

func (h *Handlers) setRole(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventSetRole
	var p rolePayload
	if err := decode(ev, data, &p); err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	switch {
	case p.SessionID == nil:
		h.fail(c, ev, ack, required(ev, "sessionId"))
	case p.Role == nil:
		h.fail(c, ev, ack, required(ev, "role"))
	default:
		st, err := h.eng.SetRole(c.ID(), *p.SessionID, *p.Role)
		h.reply(c, ev, ack, st, err)
	}
}

func (h *Handlers) setTempo(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventSetTempo
	var p tempoPayload
	if err := decode(ev, data, &p); err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	tempo := p.Tempo
	if tempo == nil {
		tempo = p.TempoBpm
	}
	switch {
	case p.SessionID == nil:
		h.fail(c, ev, ack, required(ev, "sessionId"))
	case tempo == nil:
		h.fail(c, ev, ack, required(ev, "tempo"))
	default:
		st, err := h.eng.SetTempo(c.ID(), *p.SessionID, *tempo)
		h.reply(c, ev, ack, st, err)
	}
}

func (h *Handlers) play(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventPlay
	var p playPayload
	if err := decode(ev, data, &p); err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	if p.SessionID == nil {
		h.fail(c, ev, ack, required(ev, "sessionId"))
		return
	}
	delay := 0.0
	if p.DelayMs != nil {
		delay = *p.DelayMs
	}
	st, err := h.eng.Play(c.ID(), *p.SessionID, delay)
	h.reply(c, ev, ack, st, err)
}

func (h *Handlers) pause(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventPause
	id, err := sessionOf(ev, data)
	var st engine.State
	if err == nil {
		st, err = h.eng.Pause(c.ID(), id)
	}
	h.reply(c, ev, ack, st, err)
}

func (h *Handlers) stop(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventStop
	id, err := sessionOf(ev, data)
	var st engine.State
	if err == nil {
		st, err = h.eng.Stop(c.ID(), id)
	}
	h.reply(c, ev, ack, st, err)
}

func (h *Handlers) seek(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventSeek
	var p seekPayload
	if err := decode(ev, data, &p); err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	pos := p.Position
	if pos == nil {
		pos = p.PositionMs
	}
	switch {
	case p.SessionID == nil:
		h.fail(c, ev, ack, required(ev, "sessionId"))
	case pos == nil:
		h.fail(c, ev, ack, required(ev, "position"))
	default:
		st, err := h.eng.Seek(c.ID(), *p.SessionID, *pos)
		h.reply(c, ev, ack, st, err)
	}
}

func (h *Handlers) updateMessage(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventUpdateMessage
	var p messagePayload
	if err := decode(ev, data, &p); err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	switch {
	case p.SessionID == nil:
		h.fail(c, ev, ack, required(ev, "sessionId"))
	case p.Message == nil:
		h.fail(c, ev, ack, required(ev, "message"))
	default:
		st, err := h.eng.UpdateMessage(c.ID(), *p.SessionID, *p.Message)
		h.reply(c, ev, ack, st, err)
	}
}

func (h *Handlers) syncRequest(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventSyncRequest
	id, err := sessionOf(ev, data)
	var resp engine.SyncResponse
	if err == nil {
		resp, err = h.eng.SyncRequest(c.ID(), id)
	}
	if err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	_ = c.EmitReply(protocol.EventSyncResponse, resp)
	if ack != nil {
		ack(map[string]any{"ok": true, "sync": resp})
	}
}

// heartbeat answers the mobile app's heartbeat. A missing payload is
// accepted: the timestamp is optional and nothing else is carried.
func (h *Handlers) heartbeat(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventHeartbeat
	var p timestampPayload
	if data != nil {
		if err := decode(ev, data, &p); err != nil {
			h.fail(c, ev, ack, err)
			return
		}
	}
	if p.Timestamp != nil && !finite(*p.Timestamp) {
		h.fail(c, ev, ack, invalid("%s: timestamp must be a finite number", ev))
		return
	}
	now := epochMs(time.Now())
	resp := map[string]any{"timestamp": p.Timestamp, "clientTimestamp": p.Timestamp, "serverTimestamp": now}
	_ = c.EmitReply(protocol.EventHeartbeatResponse, resp)
	if ack != nil {
		resp["ok"] = true
		ack(resp)
	}
}

func (h *Handlers) latencyProbe(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventLatencyProbe
	var p timestampPayload
	if err := decode(ev, data, &p); err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	if p.Timestamp == nil || !finite(*p.Timestamp) {
		h.fail(c, ev, ack, invalid("%s: timestamp is required and must be a finite number", ev))
		return
	}
	resp := map[string]any{"clientTimestamp": *p.Timestamp, "serverTimestamp": epochMs(time.Now())}
	_ = c.EmitReply(protocol.EventLatencyResponse, resp)
	if ack != nil {
		resp["ok"] = true
		ack(resp)
	}
}

// heartbeatResponse is a client's answer to the server heartbeat; the
// echoed server timestamp gives a round trip on the server's own clock.
func (h *Handlers) heartbeatResponse(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventHeartbeatResponse
	var p timestampPayload
	if err := decode(ev, data, &p); err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	if p.Timestamp != nil && finite(*p.Timestamp) && h.countEcho(c, *p.Timestamp) {
		rtt := epochMs(time.Now()) - *p.Timestamp
		if rtt >= 0 && rtt < 60_000 {
			h.mon.ObserveSyncLatency(time.Duration(rtt * float64(time.Millisecond) / 2))
		}
	}
	if ack != nil {
		ack(map[string]any{"ok": true})
	}
}

// clockSync answers one NTP-style sample: t1 when the request was read, t2
// just before the answer is queued, both epoch ms with sub-ms precision.
func (h *Handlers) clockSync(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventClockSync
	t1 := epochMs(time.Now())
	var p clockPayload
	if err := decode(ev, data, &p); err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	if p.T0 == nil || !finite(*p.T0) {
		h.fail(c, ev, ack, invalid("%s: t0 is required and must be a finite number", ev))
		return
	}
	resp := map[string]any{"ok": true, "t0": *p.T0, "t1": t1}
	if ack == nil {
		resp["t2"] = epochMs(time.Now())
		_ = c.EmitReply(ev, resp)
		return
	}
	resp["t2"] = epochMs(time.Now())
	ack(resp)
}

// syncQuality takes a device's own report of its clock sync.
func (h *Handlers) syncQuality(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	const ev = protocol.EventSyncQuality
	var p qualityPayload
	if err := decode(ev, data, &p); err != nil {
		h.fail(c, ev, ack, err)
		return
	}
	if p.OffsetMs == nil || p.RttMs == nil || !finite(*p.OffsetMs) || !finite(*p.RttMs) || *p.RttMs < 0 {
		h.fail(c, ev, ack, invalid("%s: offsetMs and rttMs are required finite numbers, rttMs >= 0", ev))
		return
	}
	jitter := 0.0
	if p.JitterMs != nil && finite(*p.JitterMs) {
		jitter = *p.JitterMs
	}
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	if h.countQuality(c, time.Now()) {
		h.mon.ObserveClientSync(ms(*p.OffsetMs), ms(*p.RttMs), ms(jitter))
	}
	if ack != nil {
		ack(map[string]any{"ok": true})
	}
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
