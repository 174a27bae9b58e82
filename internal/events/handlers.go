package events

import (
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/bandsync/bandsync/internal/engine"
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
	var p joinPayload
	if err := decode("join_session", data, &p); err != nil {
		h.fail(c, "join_session", ack, err)
		return
	}
	if p.SessionID == nil {
		h.fail(c, "join_session", ack, required("join_session", "sessionId"))
		return
	}
	if p.TickIntervalMs != nil && !(*p.TickIntervalMs >= 0 && *p.TickIntervalMs <= maxTickIntervalMs) {
		h.fail(c, "join_session", ack, invalid("join_session: tickIntervalMs must be a number from 0 (no ticks) to %d ms, got %s",
			maxTickIntervalMs, strconv.FormatFloat(*p.TickIntervalMs, 'f', -1, 64)))
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
	id, err := sessionOf("leave_session", data)
	if err == nil {
		err = h.eng.Leave(c.ID(), id)
	}
	if err != nil {
		h.fail(c, "leave_session", ack, err)
		return
	}
	if ack != nil {
		ack(map[string]any{"ok": true})
	}
}

func (h *Handlers) setRole(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	var p rolePayload
	if err := decode("set_role", data, &p); err != nil {
		h.fail(c, "set_role", ack, err)
		return
	}
	switch {
	case p.SessionID == nil:
		h.fail(c, "set_role", ack, required("set_role", "sessionId"))
	case p.Role == nil:
		h.fail(c, "set_role", ack, required("set_role", "role"))
	default:
		st, err := h.eng.SetRole(c.ID(), *p.SessionID, *p.Role)
		h.reply(c, "set_role", ack, st, err)
	}
}

func (h *Handlers) setTempo(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	var p tempoPayload
	if err := decode("set_tempo", data, &p); err != nil {
		h.fail(c, "set_tempo", ack, err)
		return
	}
	tempo := p.Tempo
	if tempo == nil {
		tempo = p.TempoBpm
	}
	switch {
	case p.SessionID == nil:
		h.fail(c, "set_tempo", ack, required("set_tempo", "sessionId"))
	case tempo == nil:
		h.fail(c, "set_tempo", ack, required("set_tempo", "tempo"))
	default:
		st, err := h.eng.SetTempo(c.ID(), *p.SessionID, *tempo)
		h.reply(c, "set_tempo", ack, st, err)
	}
}

func (h *Handlers) play(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	var p playPayload
	if err := decode("play", data, &p); err != nil {
		h.fail(c, "play", ack, err)
		return
	}
	if p.SessionID == nil {
		h.fail(c, "play", ack, required("play", "sessionId"))
		return
	}
	delay := 0.0
	if p.DelayMs != nil {
		delay = *p.DelayMs
	}
	st, err := h.eng.Play(c.ID(), *p.SessionID, delay)
	h.reply(c, "play", ack, st, err)
}

func (h *Handlers) pause(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	id, err := sessionOf("pause", data)
	var st engine.State
	if err == nil {
		st, err = h.eng.Pause(c.ID(), id)
	}
	h.reply(c, "pause", ack, st, err)
}

func (h *Handlers) stop(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	id, err := sessionOf("stop", data)
	var st engine.State
	if err == nil {
		st, err = h.eng.Stop(c.ID(), id)
	}
	h.reply(c, "stop", ack, st, err)
}

func (h *Handlers) seek(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	var p seekPayload
	if err := decode("seek", data, &p); err != nil {
		h.fail(c, "seek", ack, err)
		return
	}
	pos := p.Position
	if pos == nil {
		pos = p.PositionMs
	}
	switch {
	case p.SessionID == nil:
		h.fail(c, "seek", ack, required("seek", "sessionId"))
	case pos == nil:
		h.fail(c, "seek", ack, required("seek", "position"))
	default:
		st, err := h.eng.Seek(c.ID(), *p.SessionID, *pos)
		h.reply(c, "seek", ack, st, err)
	}
}

func (h *Handlers) updateMessage(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	var p messagePayload
	if err := decode("update_message", data, &p); err != nil {
		h.fail(c, "update_message", ack, err)
		return
	}
	switch {
	case p.SessionID == nil:
		h.fail(c, "update_message", ack, required("update_message", "sessionId"))
	case p.Message == nil:
		h.fail(c, "update_message", ack, required("update_message", "message"))
	default:
		st, err := h.eng.UpdateMessage(c.ID(), *p.SessionID, *p.Message)
		h.reply(c, "update_message", ack, st, err)
	}
}

func (h *Handlers) syncRequest(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	id, err := sessionOf("sync_request", data)
	var resp engine.SyncResponse
	if err == nil {
		resp, err = h.eng.SyncRequest(c.ID(), id)
	}
	if err != nil {
		h.fail(c, "sync_request", ack, err)
		return
	}
	_ = c.EmitReply("sync_response", resp)
	if ack != nil {
		ack(map[string]any{"ok": true, "sync": resp})
	}
}

// heartbeat answers the mobile app's heartbeat. A missing payload is
// accepted: the timestamp is optional and nothing else is carried.
func (h *Handlers) heartbeat(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	var p timestampPayload
	if data != nil {
		if err := decode("heartbeat", data, &p); err != nil {
			h.fail(c, "heartbeat", ack, err)
			return
		}
	}
	if p.Timestamp != nil && !finite(*p.Timestamp) {
		h.fail(c, "heartbeat", ack, invalid("heartbeat: timestamp must be a finite number"))
		return
	}
	now := epochMs(time.Now())
	resp := map[string]any{"timestamp": p.Timestamp, "clientTimestamp": p.Timestamp, "serverTimestamp": now}
	_ = c.EmitReply("heartbeat_response", resp)
	if ack != nil {
		resp["ok"] = true
		ack(resp)
	}
}

func (h *Handlers) latencyProbe(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	var p timestampPayload
	if err := decode("latency_probe", data, &p); err != nil {
		h.fail(c, "latency_probe", ack, err)
		return
	}
	if p.Timestamp == nil || !finite(*p.Timestamp) {
		h.fail(c, "latency_probe", ack, invalid("latency_probe: timestamp is required and must be a finite number"))
		return
	}
	resp := map[string]any{"clientTimestamp": *p.Timestamp, "serverTimestamp": epochMs(time.Now())}
	_ = c.EmitReply("latency_response", resp)
	if ack != nil {
		resp["ok"] = true
		ack(resp)
	}
}

// heartbeatResponse is a client's answer to the server heartbeat; the
// echoed server timestamp gives a round trip on the server's own clock.
func (h *Handlers) heartbeatResponse(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	var p timestampPayload
	if err := decode("heartbeat_response", data, &p); err != nil {
		h.fail(c, "heartbeat_response", ack, err)
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
	t1 := epochMs(time.Now())
	var p clockPayload
	if err := decode("clock_sync", data, &p); err != nil {
		h.fail(c, "clock_sync", ack, err)
		return
	}
	if p.T0 == nil || !finite(*p.T0) {
		h.fail(c, "clock_sync", ack, invalid("clock_sync: t0 is required and must be a finite number"))
		return
	}
	resp := map[string]any{"ok": true, "t0": *p.T0, "t1": t1}
	if ack == nil {
		resp["t2"] = epochMs(time.Now())
		_ = c.EmitReply("clock_sync", resp)
		return
	}
	resp["t2"] = epochMs(time.Now())
	ack(resp)
}

// syncQuality takes a device's own report of its clock sync.
func (h *Handlers) syncQuality(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
	var p qualityPayload
	if err := decode("sync_quality", data, &p); err != nil {
		h.fail(c, "sync_quality", ack, err)
		return
	}
	if p.OffsetMs == nil || p.RttMs == nil || !finite(*p.OffsetMs) || !finite(*p.RttMs) || *p.RttMs < 0 {
		h.fail(c, "sync_quality", ack, invalid("sync_quality: offsetMs and rttMs are required finite numbers, rttMs >= 0"))
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
