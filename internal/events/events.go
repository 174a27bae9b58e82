// Package events is where every BandSync client event is handled: it
// decodes and type-checks each payload, applies the per-socket rate limit,
// calls the sync engine, and answers with an acknowledgement when the
// client asked for one or an `error` event when it did not
// (docs/protocol.md, "Client events"). It also adapts the Socket.IO server to
// the engine's Outbox.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"time"

	"golang.org/x/time/rate"

	"github.com/bandsync/bandsync/internal/engine"
	"github.com/bandsync/bandsync/internal/protocol"
	"github.com/bandsync/bandsync/internal/socketio"
)

// Monitor is what the handlers report to the performance monitor.
type Monitor interface {
	ConnOpened()
	ConnClosed()
	MessageIn()
	MessagesOut(n int)
	ConnError()
	ConnRejected(reason string)
	ObserveSyncLatency(d time.Duration)
	ObserveEventProcessing(d time.Duration)
	ObserveClientSync(offset, rtt, jitter time.Duration)
	RateLimited()
	ProtocolError(code string)
}

// Options configure the handlers.
type Options struct {
	RateLimitWindow        time.Duration
	RateLimitMaxRequests   int
	RateLimitMaxViolations int // 0: never disconnect for violations
	HeartbeatInterval      time.Duration
	Logger                 *slog.Logger
}

// Handlers binds the Socket.IO server to the engine.
type Handlers struct {
	eng     *engine.Engine
	srv     *socketio.Server
	mon     Monitor
	opts    Options
	log     *slog.Logger
	creates *creationLimits
	beats   recentBeats
}

// Outbox returns the engine's view of the Socket.IO server.
func Outbox(srv *socketio.Server) engine.Outbox { return outbox{srv} }

// New builds the handlers. Bind them to the server options before the
// server is created, then Register them with the server and the engine
// (which itself needs the server, hence two steps).
func New(mon Monitor, opts Options) *Handlers {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Handlers{mon: mon, opts: opts, log: opts.Logger, creates: newCreationLimits()}
}

// Bind sets the connection hooks of the server options.
func (h *Handlers) Bind(o *socketio.Options) {
	o.OnConnect = h.onConnect
	o.OnDisconnect = h.onDisconnect
	o.OnPacketError = h.onPacketError
	o.OnUnknownEvent = h.onUnknown
	o.Middleware = h.middleware
	o.OnFramesOut = h.mon.MessagesOut
	o.OnReject = h.mon.ConnRejected
	o.OnPong = func(_ *socketio.Conn, rtt time.Duration) { h.mon.ObserveSyncLatency(rtt / 2) }
}

// Register attaches every event handler to srv, to be served by eng.
func (h *Handlers) Register(srv *socketio.Server, eng *engine.Engine) {
	h.srv, h.eng = srv, eng
	for event, fn := range h.handlers() {
		srv.On(event, h.timed(fn))
	}
}

// handlers maps each of protocol.ClientEvents to its handler.
func (h *Handlers) handlers() map[string]socketio.Handler {
	m := map[string]socketio.Handler{
		protocol.EventJoinSession:       h.joinSession,
		protocol.EventLeaveSession:      h.leaveSession,
		protocol.EventSetRole:           h.setRole,
		protocol.EventSetTempo:          h.setTempo,
		protocol.EventPlay:              h.play,
		protocol.EventPause:             h.pause,
		protocol.EventSeek:              h.seek,
		protocol.EventStop:              h.stop,
		protocol.EventSyncRequest:       h.syncRequest,
		protocol.EventUpdateMessage:     h.updateMessage,
		protocol.EventHeartbeat:         h.heartbeat,
		protocol.EventLatencyProbe:      h.latencyProbe,
		protocol.EventHeartbeatResponse: h.heartbeatResponse,
		protocol.EventClockSync:         h.clockSync,
		protocol.EventSyncQuality:       h.syncQuality,
	}
	maps.Copy(m, h.songHandlers())
	return m
}

// Run sends the server heartbeat to every socket each HeartbeatInterval
// until ctx ends.
func (h *Handlers) Run(ctx context.Context) {
	if h.opts.HeartbeatInterval <= 0 {
		return
	}
	t := time.NewTicker(h.opts.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			ts := epochMs(now)
			h.beats.add(ts)
			_ = h.srv.EmitAll(protocol.EventHeartbeat, map[string]float64{"timestamp": ts})
		}
	}
}

// client is the per-socket state the handlers keep.
type client struct {
	limit   *limiter
	creates *rate.Limiter // sessions this socket may still create
	reports reportState
}

func (h *Handlers) onConnect(c *socketio.Conn) {
	c.Value = &client{limit: newLimiter(h.opts.RateLimitWindow, h.opts.RateLimitMaxRequests), creates: newSocketCreateLimit()}
	h.mon.ConnOpened()
	if c.Recovered() {
		h.eng.Attach(c.ID(), sessionsOf(c.Rooms())...)
		if c.ReplaySkipped() {
			h.sendFreshState(c)
		}
	}
	h.log.Debug("socket connected", "socketId", c.ID(), "recovered", c.Recovered(), "remote", c.RemoteAddr())
}

// sendFreshState gives a recovered socket whose missed events were too
// many to replay the state of each of its sessions: the app draws from
// snapshots, so one is worth everything it missed.
func (h *Handlers) sendFreshState(c *socketio.Conn) {
	for _, id := range sessionsOf(c.Rooms()) {
		if st, ok := h.eng.Session(id); ok {
			_ = c.Emit(protocol.EventSnapshot, st)
		}
	}
}

func (h *Handlers) onDisconnect(c *socketio.Conn, reason string, willRecover bool) {
	h.mon.ConnClosed()
	if reason == socketio.ReasonTransportError || reason == socketio.ReasonParseError {
		h.mon.ConnError()
	}
	if willRecover {
		h.eng.Detach(c.ID())
	} else {
		h.eng.Remove(c.ID())
	}
	h.log.Debug("socket disconnected", "socketId", c.ID(), "reason", reason, "recoverable", willRecover)
}

func (h *Handlers) onPacketError(c *socketio.Conn, event string, err error) {
	code := protocol.CodeInvalidPayload
	if !errors.As(err, new(*socketio.DecodeError)) {
		code = protocol.CodeInternal
	}
	h.fail(c, event, nil, &engine.Error{Code: code, Message: err.Error()})
}

func (h *Handlers) onUnknown(c *socketio.Conn, event string, ack socketio.Ack) {
	h.fail(c, event, ack, &engine.Error{Code: protocol.CodeUnknownEvent, Message: "unknown event " + event})
}

// middleware counts every event against the socket's rate limit, the
// heartbeats and probes included.
func (h *Handlers) middleware(c *socketio.Conn, event string, ack socketio.Ack) bool {
	h.mon.MessageIn()
	cl, _ := c.Value.(*client)
	if cl == nil {
		return true
	}
	v := cl.limit.allow(time.Now())
	if v.ok {
		return true
	}
	h.mon.RateLimited()
	if v.notify {
		_ = c.EmitReply(protocol.EventRateLimitExceeded, map[string]any{
			"event": event, "limit": h.opts.RateLimitMaxRequests, "windowMs": h.opts.RateLimitWindow.Milliseconds(),
			"retryAfterMs": v.retryAfter.Milliseconds(), "violations": v.violations,
		})
	}
	if ack != nil {
		ack(failure(&engine.Error{Code: protocol.CodeRateLimited, Message: "too many events; retry in " + v.retryAfter.Round(time.Millisecond).String()}))
	}
	if max := h.opts.RateLimitMaxViolations; max > 0 && v.violations >= max && v.notify {
		h.log.Warn("disconnecting socket after repeated rate-limit violations", "socketId", c.ID(), "violations", v.violations, "remote", c.RemoteAddr())
		c.Disconnect()
	}
	return false
}

// fail reports an error through the ack when there is one, else as an
// `error` event.
func (h *Handlers) fail(c *socketio.Conn, event string, ack socketio.Ack, err error) {
	var ee *engine.Error
	if !errors.As(err, &ee) {
		h.log.Error("event failed", "event", event, "err", err)
		ee = &engine.Error{Code: protocol.CodeInternal, Message: "internal error"}
	}
	h.mon.ProtocolError(ee.Code)
	if ack != nil {
		ack(failure(ee))
		return
	}
	var ev any
	if event != "" {
		ev = event
	}
	_ = c.EmitReply(protocol.EventError, map[string]any{"code": ee.Code, "message": ee.Message, "event": ev})
}

func failure(e *engine.Error) map[string]any {
	return map[string]any{"ok": false, "error": map[string]string{"code": e.Code, "message": e.Message}}
}

// reply answers a state-changing event.
func (h *Handlers) reply(c *socketio.Conn, event string, ack socketio.Ack, st engine.State, err error) {
	if err != nil {
		h.fail(c, event, ack, err)
		return
	}
	if ack != nil {
		ack(map[string]any{"ok": true, "state": st})
	}
}

func epochMs(t time.Time) float64 { return float64(t.UnixNano()) / 1e6 }

// timed wraps a handler to measure its processing time.
func (h *Handlers) timed(fn socketio.Handler) socketio.Handler {
	return func(c *socketio.Conn, data json.RawMessage, ack socketio.Ack) {
		start := time.Now()
		fn(c, data, ack)
		h.mon.ObserveEventProcessing(time.Since(start))
	}
}
