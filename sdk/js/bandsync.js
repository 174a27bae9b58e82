// @bandsync/sdk: a BandSync client for browsers and Node.js.
//
// It keeps one device in sync with a BandSync session: it joins a session,
// estimates the offset between this device's clock and the server's
// (NTP-style, over the `clock_sync` event), and derives the playback
// position and beat for any instant from the session's anchor
// (position, serverTimestamp, startsAt) instead of from the moment a message
// happened to arrive. Two devices that ask `positionAt(T)` for the same
// instant T get the same answer, however late either received its last
// update.
//
// The only dependency is socket.io-client 4.8.x. The web app served by the
// BandSync binary loads this same file from /sdk/bandsync.js, with the
// import below pointing at the vendored browser build instead.
import { io as defaultIo } from "socket.io-client";

export const VERSION = "0.1.0";

/** Largest position the server accepts (24 h, PROTOCOL.md section 2). */
export const MAX_POSITION_MS = 86_400_000;
/** Largest `play.delayMs` the server accepts. */
export const MAX_DELAY_MS = 5000;

const DEFAULTS = {
  samplesPerRound: 8, // clock_sync exchanges per round (a round ends with a `sync` event)
  minSampleIntervalMs: 150, // background exchanges this often while the estimate is unsure...
  maxSampleIntervalMs: 1000, // ...and this often once it is within 1 ms
  windowMs: 10 * 60_000, // the offset comes from the bounds seen over this window (each loosened by its age)
  minDriftSpanMs: 60_000, // drift is fitted only over at least this baseline
  maxDriftPpm: 100, // and bounded by what real oscillators do
  slewRate: 0.01, // corrections are slewed at 1% (10 ms per second)...
  stepMs: 250, // ...unless larger than this (first sync, a clock that was set)
  ackTimeoutMs: 5000,
  tickIntervalMs: null, // scroll_tick rate asked for at join (null: the server's default, every tick)
  reportSyncQuality: true,
  reconnectionDelay: 250,
  reconnectionDelayMax: 3000,
};

/** An error from the server (or from the SDK itself), with a stable `.code`. */
export class BandSyncError extends Error {
  constructor(code, message, details) {
    super(message || code);
    this.name = "BandSyncError";
    this.code = code;
    if (details !== undefined) this.details = details;
  }
}

/**
 * The local clock the SDK measures with: epoch milliseconds with sub-ms
 * resolution, monotonic between page loads (performance.timeOrigin +
 * performance.now()), so a wall-clock step on the device does not jump the
 * band's position. Falls back to Date.now().
 */
export function localNow() {
  const p = globalThis.performance;
  if (p && typeof p.now === "function" && typeof p.timeOrigin === "number") {
    return p.timeOrigin + p.now();
  }
  return Date.now();
}

/**
 * Connects to a BandSync server and returns the client at once; it connects,
 * syncs its clock and reconnects in the background.
 *
 * @param {string} url  the server's origin, e.g. "https://band.example" ("" or
 *                      undefined: the page's own origin, in a browser)
 * @param {object} [opts] see bandsync.d.ts (ConnectOptions)
 */
export function connect(url, opts = {}) {
  return new BandSyncClient(url, opts);
}

/** A tiny event emitter that works the same in browsers and Node.js. */
class Emitter {
  constructor() {
    this._listeners = new Map();
  }
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return this;
  }
  off(event, fn) {
    const set = this._listeners.get(event);
    if (set) set.delete(fn);
    return this;
  }
  once(event, fn) {
    const wrapped = (...args) => {
      this.off(event, wrapped);
      fn(...args);
    };
    return this.on(event, wrapped);
  }
  _emit(event, ...args) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        // A listener's bug must not break the sync loop; report it.
        setTimeout(() => {
          throw err;
        });
      }
    }
  }
}

const median = (xs) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const stddev = (xs) => {
  if (xs.length < 2) return 0;
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  return Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1));
};

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

const T0_RE = /"t0":(-?[0-9.eE+-]+)/;
const TS_RE = /"serverTimestamp":(-?[0-9.eE+-]+)/;

/**
 * The clock model: where the server's clock is, relative to this device's,
 * and how sure of it we are.
 *
 * Every message with a server timestamp bounds the offset theta (server
 * minus local) from one side, because no message arrives before it is sent:
 *
 *   a request sent at local t0 and received at server t1:  theta <= t1 - t0
 *   a frame sent at server ts and arrived at local t3:     theta >= ts - t3
 *
 * Queueing, retransmission, a busy radio or a busy event loop only ever add
 * delay, so the noise on each bound is one-sided: the tightest bounds seen
 * (the lowest one-way delays, in each direction separately) are the best
 * evidence, and averaging (a median, or a Kalman filter's Gaussian noise
 * model) would only pull the estimate towards the congested samples. The
 * estimate is the middle of the tightest interval seen over a sliding
 * window, and `errorMs` is that interval's half-width: a hard bound while
 * the path's minimum delay is the same both ways. Downlink bounds come from
 * clock_sync answers and from every scroll_tick (60 a second while
 * playing), so a jittery downlink is searched for its lucky frames far
 * faster than round trips alone could.
 *
 * Bounds are kept per bucket of `bucketMs`, carried forward along the drift
 * estimate and loosened by its uncertainty (20 ppm until it is fitted), so
 * `errorMs` grows honestly with the age of the evidence. Drift is fitted
 * over a long baseline only, bounded by what real oscillators do, and may
 * never pull the estimate outside the interval the bounds allow for any
 * drift within that bound.
 *
 * What it cannot see: a path whose minimum delay differs between the two
 * directions biases the middle by half the difference (docs/sync.md).
 */
export class ClockModel {
  constructor(opts = {}) {
    this.opts = {
      bucketMs: 2000, // bounds are kept per bucket of this much local time
      windowMs: 10 * 60_000, // the offset comes from the buckets of this window
      driftWindowMs: 10 * 60_000, // the drift from the buckets of this one
      minDriftSpanMs: 60_000, // a drift fit needs at least this baseline
      maxDriftPpm: 100, // real crystals are within tens of ppm
      priorDriftPpm: 20, // assumed drift uncertainty before a fit
      contradictionMs: 5, // a bound beyond the other side by this much: the clock stepped
      ...opts,
    };
    this.reset();
  }

  reset() {
    this._buckets = []; // {key, up, upAt, lo, loAt}, oldest first
    this.drift = 0; // server ms per local ms, minus 1
    this.driftUncertainty = this.opts.priorDriftPpm / 1e6;
    this.steps = 0;
  }

  /** Whether both sides of the offset are bounded. */
  get ready() {
    return this._buckets.some((b) => b.up !== undefined) && this._buckets.some((b) => b.lo !== undefined);
  }

  _bucket(at) {
    const key = Math.floor(at / this.opts.bucketMs);
    let b = this._buckets[this._buckets.length - 1];
    if (!b || b.key < key) {
      b = { key };
      this._buckets.push(b);
      const oldest = key - Math.ceil(this.opts.driftWindowMs / this.opts.bucketMs);
      while (this._buckets.length && this._buckets[0].key < oldest) this._buckets.shift();
      if (this._buckets.length > 1024) this._buckets.shift();
    } else if (b.key > key) {
      // A sample from before the newest bucket (arrived out of order): find
      // its own bucket, or drop it.
      b = this._buckets.find((x) => x.key === key);
    }
    return b;
  }

  /** theta <= upper: from a request sent at local `at` (upper = t1 - t0). Returns whether a bound tightened. */
  addUpper(upper, at) {
    if (!Number.isFinite(upper) || !Number.isFinite(at)) return false;
    if (this._contradicts(upper, at, +1)) this._stepped();
    const b = this._bucket(at);
    if (!b) return false;
    if (b.up === undefined || upper + this.drift * (b.upAt - at) < b.up) {
      b.up = upper;
      b.upAt = at;
      return true;
    }
    return false;
  }

  /** theta >= lower: from a server-stamped frame that arrived at local `at` (lower = stamp - at). */
  addLower(lower, at) {
    if (!Number.isFinite(lower) || !Number.isFinite(at)) return false;
    if (this._contradicts(lower, at, -1)) this._stepped();
    const b = this._bucket(at);
    if (!b) return false;
    if (b.lo === undefined || lower + this.drift * (b.loAt - at) > b.lo) {
      b.lo = lower;
      b.loAt = at;
      return true;
    }
    return false;
  }

  /** One clock_sync exchange: t0, t3 local; t1, t2 server. */
  addExchange({ t0, t1, t2, t3 }) {
    const a = this.addUpper(t1 - t0, t0);
    const b = this.addLower(t2 - t3, t3);
    return a || b;
  }

  // A bound on the wrong side of the opposite bound by more than noise can
  // explain is proof that the offset itself changed (a clock was set).
  _contradicts(v, at, side) {
    const e = this.estimate(at);
    if (!e) return false;
    const margin = this.opts.contradictionMs;
    return side > 0 ? v < e.lower - margin : v > e.upper + margin;
  }

  _stepped() {
    this._buckets = [];
    this.drift = 0;
    this.driftUncertainty = this.opts.priorDriftPpm / 1e6;
    this.steps += 1;
  }

  /**
   * The offset at local instant `at`: {offset, errorMs, lower, upper}, or
   * null before both sides are bounded.
   */
  estimate(at) {
    const minKey = Math.floor((at - this.opts.windowMs) / this.opts.bucketMs);
    // Each bound carried to `at` along drift d, and loosened by what a drift
    // error of `unc` could have done since: a fresh bound beats an old one
    // unless the old one is tighter by more than the clock could have
    // wandered.
    const carried = (d, unc) => {
      let up = Infinity;
      let lo = -Infinity;
      for (const b of this._buckets) {
        if (b.key < minKey) continue;
        if (b.up !== undefined) up = Math.min(up, b.up + d * (at - b.upAt) + unc * Math.abs(at - b.upAt));
        if (b.lo !== undefined) lo = Math.max(lo, b.lo + d * (at - b.loAt) - unc * Math.abs(at - b.loAt));
      }
      return { up, lo };
    };
    const c = carried(this.drift, this.driftUncertainty);
    if (!Number.isFinite(c.up) || !Number.isFinite(c.lo)) return null;
    let offset = (c.up + c.lo) / 2;
    const errorMs = Math.abs(c.up - c.lo) / 2;
    // The drift may never pull the estimate outside what the bounds allow
    // for any drift a real crystal can have.
    const hard = carried(0, this.opts.maxDriftPpm / 1e6);
    if (hard.lo <= hard.up) offset = clamp(offset, hard.lo, hard.up);
    return { offset, errorMs, lower: c.lo, upper: c.up };
  }

  /**
   * Refits the drift: a weighted least-squares slope of the buckets'
   * midpoints, accepted only over a long enough baseline and when it stands
   * out of its own noise, and clamped to maxDriftPpm.
   */
  fitDrift() {
    const o = this.opts;
    const pts = [];
    for (const b of this._buckets) {
      if (b.up === undefined || b.lo === undefined) continue;
      const w = Math.max(0.05, (b.up - b.lo) / 2);
      pts.push({ t: (b.upAt + b.loAt) / 2, m: (b.up + b.lo) / 2, w: 1 / (w * w) });
    }
    if (pts.length < 5 || pts[pts.length - 1].t - pts[0].t < o.minDriftSpanMs) {
      this.drift = 0;
      this.driftUncertainty = o.priorDriftPpm / 1e6;
      return;
    }
    let sw = 0;
    let st = 0;
    let sm = 0;
    for (const p of pts) {
      sw += p.w;
      st += p.w * p.t;
      sm += p.w * p.m;
    }
    const mt = st / sw;
    const mm = sm / sw;
    let num = 0;
    let den = 0;
    for (const p of pts) {
      num += p.w * (p.t - mt) * (p.m - mm);
      den += p.w * (p.t - mt) ** 2;
    }
    if (!(den > 0)) return;
    const slope = num / den;
    const se = Math.sqrt(1 / den); // with each bucket's half-width as its sigma
    const max = o.maxDriftPpm / 1e6;
    const prior = o.priorDriftPpm / 1e6;
    if (Math.abs(slope) > 2 * se) {
      this.drift = clamp(slope, -max, max);
      this.driftUncertainty = clamp(2 * se, 2e-6, max);
    } else {
      // The data say less than what is known of crystals anyway: keep the
      // prior (a noisy link must not make old bounds look worse than that).
      this.drift = 0;
      this.driftUncertainty = clamp(2 * se, 2e-6, prior);
    }
  }
}

/**
 * A continuous mapping from local time to server time that follows the
 * clock model's estimate without jumping: when the estimate moves, the
 * difference is slewed away at `rate` (1% = 10 ms per second), the way
 * audio engines correct a clock, so a chart never jumps and a click never
 * doubles or skips a beat. A correction larger than `stepMs` (the first
 * sync, a clock that was set) is applied at once.
 */
export class SlewedClock {
  constructor({ rate = 0.01, stepMs = 250 } = {}) {
    this.rate = rate;
    this.stepMs = stepMs;
    this.base = 0; // target offset at `at`
    this.at = 0;
    this.drift = 0;
    this.resid = 0; // applied minus target at `since`, slewed towards 0
    this.since = 0;
    this.set = false;
  }

  /** Offset (server - local) in use at local instant `l`. */
  offsetAt(l) {
    const target = this.base + this.drift * (l - this.at);
    if (!this.resid) return target;
    const left = Math.max(0, Math.abs(this.resid) - this.rate * Math.max(0, l - this.since));
    return target + Math.sign(this.resid) * left;
  }

  /** The residual correction still being slewed at `l`. */
  pendingAt(l) {
    return this.offsetAt(l) - (this.base + this.drift * (l - this.at));
  }

  /**
   * Retargets at local instant `now`: offset(l) -> base + drift*(l - now),
   * slewed from the offset in use unless `slew` is false (nothing is
   * playing, so nobody would see a jump) or the step is over stepMs.
   */
  retarget(now, base, drift, slew = true) {
    const cur = this.set ? this.offsetAt(now) : base;
    this.base = base;
    this.at = now;
    this.drift = drift;
    this.resid = slew ? cur - base : 0;
    this.since = now;
    if (Math.abs(this.resid) > this.stepMs) this.resid = 0;
    this.set = true;
  }

  toServer(l) {
    return l + this.offsetAt(l);
  }

  toLocal(s) {
    // offsetAt changes by at most (drift + rate) per ms, so this converges
    // by that factor per step.
    let l = s - this.offsetAt(s);
    for (let i = 0; i < 4; i++) l = s - this.offsetAt(l);
    return l;
  }
}

export class BandSyncClient extends Emitter {
  constructor(url, opts = {}) {
    super();
    this.opts = { ...DEFAULTS, ...opts };
    this.opts.samplesPerRound = Math.max(8, this.opts.samplesPerRound | 0);
    this.opts.minSampleIntervalMs = Math.max(50, Number(this.opts.minSampleIntervalMs) || DEFAULTS.minSampleIntervalMs);
    this.opts.maxSampleIntervalMs = Math.max(this.opts.minSampleIntervalMs, Number(this.opts.maxSampleIntervalMs) || DEFAULTS.maxSampleIntervalMs);
    this.now = typeof opts.now === "function" ? opts.now : localNow;

    /** Last session state (a `snapshot`), kept through disconnections. */
    this.state = null;
    this.sessionId = null;
    this.role = null;
    this.connectionState = "connecting";
    this.recovered = false;

    this._join = null; // {sessionId, displayName, role} to re-join with
    this._wantLeader = false; // re-claim leadership after a non-recovered reconnect
    this._anchor = null; // what positionAt derives from
    this._clock = new ClockModel({
      windowMs: this.opts.windowMs,
      minDriftSpanMs: this.opts.minDriftSpanMs,
      maxDriftPpm: this.opts.maxDriftPpm,
    });
    this._slew = new SlewedClock({ rate: this.opts.slewRate, stepMs: this.opts.stepMs });
    this._round = [];
    this._burstLeft = 0;
    this._fastUntil = 0;
    this._lastRefresh = -Infinity;
    this._beatPlannedOffset = NaN;
    this._sync = { synced: false, offsetMs: 0, errorMs: Infinity, rttMs: NaN, rttMinMs: NaN, jitterMs: NaN, driftPpm: 0, rounds: 0, lastSyncAt: null, samples: 0 };
    this._arrivals = new Map(); // t0 -> local arrival time of its clock_sync answer
    this._syncing = null;
    this._syncTimer = null;
    this._beatListeners = new Set();
    this._beatTimer = null;
    this._closed = false;
    this._attempt = 0;

    const ioFn = opts.io || defaultIo;
    const ioOpts = {
      transports: ["websocket"],
      forceNew: true,
      reconnection: true,
      reconnectionDelay: this.opts.reconnectionDelay,
      reconnectionDelayMax: this.opts.reconnectionDelayMax,
      timeout: this.opts.ackTimeoutMs,
      ...(opts.socketOptions || {}),
    };
    this.socket = url ? ioFn(url, ioOpts) : ioFn(ioOpts);
    this._bindSocket();
  }

  // ---------------------------------------------------------------- wiring

  _bindSocket() {
    const s = this.socket;
    const manager = s.io;
    // Timestamp clock_sync answers the moment their frame arrives, before
    // socket.io decodes and dispatches them: time the app spends before it
    // handles a message must not count as network delay.
    const hookEngine = () => {
      const engine = manager.engine;
      if (!engine || engine.__bandsyncHooked) return;
      engine.__bandsyncHooked = true;
      engine.on("data", (data) => {
        if (typeof data !== "string") return;
        if (data.indexOf('"t2"') >= 0) {
          const m = T0_RE.exec(data);
          // Answers that come after their request timed out are never
          // collected: keep the map from growing through a long stall.
          if (this._arrivals.size > 64) this._arrivals.clear();
          if (m) this._arrivals.set(Number(m[1]), this.now());
        } else if (data.length < 1024 && data.indexOf('"scroll_tick"') >= 0) {
          // Every tick was stamped by the server before it was sent: one
          // more bound on the offset, 60 a second while playing.
          const m = TS_RE.exec(data);
          if (!m) return;
          const now = this.now();
          if (this._clock.addLower(Number(m[1]) - now, now) && now - this._lastRefresh > 50) this._refreshClock(now);
        }
      });
    };
    manager.on("open", hookEngine);
    manager.on("reconnect_attempt", (n) => {
      this._attempt = n;
      this._setConnection("reconnecting", { attempt: n });
    });

    s.on("connect", () => this._onConnect());
    s.on("disconnect", (reason) => {
      if (this._closed) return;
      this._stopSyncTimer();
      // "io client disconnect" only happens through close(). The server
      // disconnecting us is not the end of the rehearsal: try again.
      if (reason === "io server disconnect") {
        this._setConnection("reconnecting", { reason });
        setTimeout(() => {
          if (!this._closed && !s.connected) s.connect();
        }, this.opts.reconnectionDelayMax);
        return;
      }
      this._setConnection(s.active ? "reconnecting" : "disconnected", { reason });
    });
    s.on("connect_error", (err) => {
      if (!s.active) this._setConnection("disconnected", { reason: err?.message });
    });
    s.on("snapshot", (snap) => this._onSnapshot(snap));
    s.on("scroll_tick", (tick) => this._onTick(tick));
    s.on("role_changed", (ev) => this._onRoleChanged(ev));
    s.on("session_joined", (ev) => this._onSessionJoined(ev));
    s.on("error", (err) => this._emit("error", new BandSyncError(err?.code || "SERVER_ERROR", err?.message, err)));
  }

  _setConnection(state, extra = {}) {
    const prev = this.connectionState;
    this.connectionState = state;
    if (prev !== state || extra.recovered !== undefined) {
      this._emit("connection", { state, previous: prev, recovered: this.recovered, ...extra });
    }
  }

  async _onConnect() {
    const s = this.socket;
    this.recovered = Boolean(s.recovered);
    this._attempt = 0;
    this._setConnection("connected", { recovered: this.recovered, socketId: s.id });
    this._startSampling();
    if (!this._join) return;
    // Re-join. With a recovered connection the server kept our membership
    // and role, and join_session only re-sends the snapshot; without, this
    // joins again (as leader if we led and leadership is free).
    const { sessionId, displayName, role } = this._join;
    const payload = { sessionId };
    if (displayName) payload.displayName = displayName;
    const wantRole = this.recovered ? role : this._wantLeader ? "leader" : role;
    if (wantRole) payload.role = wantRole;
    if (!this.recovered && this.memberToken) payload.memberToken = this.memberToken;
    if (this.opts.tickIntervalMs != null) payload.tickIntervalMs = this.opts.tickIntervalMs;
    try {
      const st = await this._request("join_session", payload, { requireConnected: true });
      this._acceptState(st);
      this._emit("rejoined", { recovered: this.recovered, state: this.state });
    } catch (err) {
      this._emit("error", err);
    }
  }

  // ---------------------------------------------------------------- clock

  /** This device's clock mapped to the server's, in epoch ms. */
  serverNow() {
    return this.toServerTime(this.now());
  }

  /** Maps a local-clock instant (this.now() units) to server time. */
  toServerTime(localMs) {
    return this._slew.toServer(localMs);
  }

  /** Maps a server-time instant to the local clock. */
  toLocalTime(serverMs) {
    return this._slew.toLocal(serverMs);
  }

  /**
   * The clock-sync figures: offsetMs (server - local, in use now), errorMs
   * (how far the position may be off, from this device's clock alone),
   * rttMs, rttMinMs, jitterMs, driftPpm, rounds, samples, lastSyncAt.
   */
  get sync() {
    const now = this.now();
    const e = this._clock.estimate(now);
    const pending = this._slew.set ? Math.abs(this._slew.pendingAt(now)) : 0;
    return {
      ...this._sync,
      offsetMs: this._slew.offsetAt(now),
      errorMs: e ? e.errorMs + pending : Infinity,
      driftPpm: this._clock.drift * 1e6,
    };
  }

  /** Runs one clock-sync round (samplesPerRound exchanges) now; resolves with the sync figures. */
  syncClock() {
    if (!this._syncing) {
      this._syncing = this._syncRound().finally(() => {
        this._syncing = null;
      });
    }
    return this._syncing;
  }

  async _sample() {
    const t0 = this.now();
    const ack = await this._request("clock_sync", { t0 }, { raw: true, requireConnected: true });
    const handled = this.now();
    const t3 = this._arrivals.get(t0) ?? handled;
    this._arrivals.delete(t0);
    if (!ack || ack.ok === false || typeof ack.t1 !== "number" || typeof ack.t2 !== "number") {
      throw new BandSyncError(ack?.error?.code || "CLOCK_SYNC_FAILED", ack?.error?.message || "bad clock_sync answer");
    }
    const { t1, t2 } = ack;
    if (!Number.isFinite(t1) || !Number.isFinite(t2) || t2 < t1) {
      throw new BandSyncError("CLOCK_SYNC_FAILED", "bad clock_sync answer");
    }
    return { t0, t1, t2, t3, rtt: t3 - t0 - (t2 - t1), offset: (t1 - t0 + (t2 - t3)) / 2 };
  }

  async _syncRound() {
    const samples = [];
    for (let i = 0; i < this.opts.samplesPerRound; i++) {
      if (!this.socket.connected || this._closed) break;
      try {
        const s = await this._sample();
        samples.push(s);
        this._addSample(s);
      } catch (err) {
        if (err?.code === "RATE_LIMITED" || err?.code === "DISCONNECTED") break;
      }
    }
    if (samples.length) this._finishRound(samples);
    return this.sync;
  }

  _addSample(s) {
    this._clock.addExchange(s);
    this._refreshClock();
  }

  // Follows the clock model's newest estimate (slewed, never jumped).
  _refreshClock(now = this.now()) {
    const e = this._clock.estimate(now);
    if (!e) return;
    this._lastRefresh = now;
    // Jumps are only seen while the band plays (count-in included); until
    // then, and until the first round has narrowed the estimate, it steps.
    const slew = this._sync.rounds > 0 && Boolean(this._anchor?.isPlaying);
    this._slew.retarget(now, e.offset, this._clock.drift, slew);
    if (!this._sync.synced) this._sync = { ...this._sync, synced: true };
    // Beat timers were set on the old mapping; a change they would feel
    // (the slew moves at most `slewRate` of the time) re-plans them.
    if (Math.abs(e.offset - this._beatPlannedOffset) > 0.5) this._scheduleBeat();
  }

  _finishRound(samples) {
    this._clock.fitDrift();
    this._refreshClock();
    const rtts = samples.map((s) => s.rtt);
    const now = this.now();
    const e = this._clock.estimate(now);
    const round = {
      offset: this._slew.offsetAt(now),
      rttMin: Math.min(...rtts),
      rtt: median(rtts),
      jitter: stddev(rtts),
    };
    this._sync = {
      synced: Boolean(e),
      offsetMs: round.offset,
      errorMs: e ? e.errorMs : Infinity,
      rttMs: round.rtt,
      rttMinMs: round.rttMin,
      jitterMs: round.jitter,
      driftPpm: this._clock.drift * 1e6,
      rounds: (this._sync.rounds || 0) + 1,
      samples: samples.length,
      lastSyncAt: now,
    };
    this._emit("sync", this.sync);
    if (this.opts.reportSyncQuality && this.socket.connected) {
      const report = { offsetMs: round.offset, rttMs: round.rtt, jitterMs: round.jitter };
      if (this.sessionId) report.sessionId = this.sessionId;
      this.socket.emit("sync_quality", report);
    }
  }

  // How long to wait before the next background exchange: back to back for
  // the first round after a (re)connection, then faster while the estimate
  // is unsure (a jittery link needs many tries to catch its quick
  // exchanges), slower once it is tight.
  _nextSampleDelay() {
    const o = this.opts;
    if (this._burstLeft > 0) return 0;
    const err = this.sync.errorMs;
    let d = o.maxSampleIntervalMs;
    if (!(err <= 1)) d = Math.max(o.minSampleIntervalMs, o.maxSampleIntervalMs / 4);
    if (!(err <= 3)) d = o.minSampleIntervalMs;
    // Catching a quick trip through a jittery link is a numbers game, and
    // the first seconds after joining are when it matters (the song may
    // start soon): try three times as often then, for a bounded while.
    if (!(err <= 3) && this.now() < this._fastUntil) d = Math.max(50, o.minSampleIntervalMs / 3);
    return d * (0.9 + 0.2 * Math.random());
  }

  _startSampling() {
    this._fastUntil = this.now() + 20_000;
    this._burstLeft = this.opts.samplesPerRound;
    this._round = [];
    this._scheduleSync(0);
  }

  _scheduleSync(delayMs) {
    this._stopSyncTimer();
    if (this._closed) return;
    this._syncTimer = setTimeout(async () => {
      this._syncTimer = null;
      if (!this.socket.connected || this._closed) return;
      let backoff = false;
      try {
        const s = await this._sample();
        this._burstLeft = Math.max(0, this._burstLeft - 1);
        this._round.push(s);
        this._addSample(s);
        if (this._round.length >= this.opts.samplesPerRound) {
          const r = this._round;
          this._round = [];
          this._finishRound(r);
        }
      } catch (err) {
        backoff = err?.code === "RATE_LIMITED";
      }
      if (!this.socket.connected || this._closed || this._syncTimer) return;
      this._scheduleSync(backoff ? this.opts.maxSampleIntervalMs * 2 : this._nextSampleDelay());
    }, delayMs);
  }

  _stopSyncTimer() {
    if (this._syncTimer) clearTimeout(this._syncTimer);
    this._syncTimer = null;
  }

  // ---------------------------------------------------------------- state

  _onSnapshot(snap) {
    if (!snap || (this.sessionId && snap.sessionId !== this.sessionId)) return;
    this._acceptState(snap);
  }

  _acceptState(st) {
    if (!st || typeof st !== "object") return;
    const prev = this.state;
    // Stale: a newer snapshot of the same session already arrived. (A
    // session recreated after a server restart has another createdAt and
    // starts its versions again.)
    if (prev && prev.sessionId === st.sessionId && prev.createdAt === st.createdAt && st.version < prev.version) {
      return;
    }
    this.state = st;
    this.sessionId = st.sessionId;
    const oldAnchor = this._anchor;
    this._anchor = {
      position: num(st.positionMs ?? st.position, 0),
      serverTimestamp: num(st.serverTimestamp, 0),
      beat: num(st.beat, 0),
      tempo: num(st.tempoBpm ?? st.tempo, 120),
      isPlaying: Boolean(st.isPlaying),
      startsAt: typeof st.startsAt === "number" ? st.startsAt : null,
      version: st.version,
    };
    if (!oldAnchor || oldAnchor.version !== this._anchor.version || oldAnchor.isPlaying !== this._anchor.isPlaying) {
      for (const e of this._beatListeners) e.gridChanged = true;
    }
    this._updateRole(st);
    this._emit("state", st, prev);
    this._scheduleBeat();
  }

  _onTick(tick) {
    if (!tick || tick.sessionId !== this.sessionId || !this._anchor) return;
    const a = this._anchor;
    if (typeof tick.version === "number" && typeof a.version === "number" && tick.version < a.version) return;
    this._anchor = {
      ...a,
      position: num(tick.positionMs, a.position),
      serverTimestamp: num(tick.serverTimestamp, a.serverTimestamp),
      beat: num(tick.beat, a.beat),
      tempo: num(tick.tempoBpm, a.tempo),
      isPlaying: true,
    };
    this._emit("tick", tick);
  }

  _onRoleChanged(ev) {
    // The snapshot that follows carries the new leader; this only keeps
    // the reason for the `role` event.
    this._roleReason = ev?.reason;
  }

  _updateRole(st) {
    const id = this.socket.id;
    const role = st.leaderSocketId && st.leaderSocketId === id ? "leader" : "follower";
    if (role !== this.role) {
      const previous = this.role;
      this.role = role;
      if (role === "leader") this._wantLeader = true;
      this._emit("role", { role, previous, reason: this._roleReason ?? null });
    }
    this._roleReason = undefined;
    // After a reconnect that was not recovered we came back as a follower
    // while our old connection still held the lead; take it back as soon
    // as the server frees it, unless someone else took it meanwhile.
    if (role === "follower" && this._wantLeader && st.leaderSocketId == null && this.socket.connected) {
      this.claimLeadership().catch(() => {});
    }
    if (role === "follower" && st.leaderSocketId && st.leaderSocketId !== id) {
      const stillMember = (st.members || []).some((m) => m.socketId === st.leaderSocketId);
      if (stillMember) this._wantLeader = false;
    }
  }

  /** Whether this device leads its session. */
  get isLeader() {
    return this.role === "leader";
  }

  // ---------------------------------------------------------------- position

  /**
   * The playback position (ms) at a local-clock instant (default: now),
   * derived from the session's anchor and the synced clock:
   * position(t) = position + (t - serverTimestamp) from startsAt on; it
   * holds before a scheduled start and while paused.
   */
  positionAt(localMs = this.now()) {
    const a = this._anchor;
    if (!a) return 0;
    if (!a.isPlaying) return a.position;
    const t = this.toServerTime(localMs);
    const { start, startPos } = startOf(a);
    return clamp(startPos + Math.max(0, t - start), 0, MAX_POSITION_MS);
  }

  /** The beat position at a local-clock instant: beat + (position(t) - position) * tempo / 60000. */
  beatAt(localMs = this.now()) {
    const a = this._anchor;
    if (!a) return 0;
    return a.beat + ((this.positionAt(localMs) - a.position) * a.tempo) / 60000;
  }

  /**
   * Like beatAt, but continues the beat grid backwards through a scheduled
   * start, so a count-in has beats: it is negative-going (below the start
   * beat) until startsAt.
   */
  gridBeatAt(localMs = this.now()) {
    const a = this._anchor;
    if (!a) return 0;
    if (!a.isPlaying) return a.beat;
    const t = this.toServerTime(localMs);
    const { start, startPos } = startOf(a);
    const startBeat = a.beat + ((startPos - a.position) * a.tempo) / 60000;
    return startBeat + ((t - start) * a.tempo) / 60000;
  }

  /** Whether the session is counting in (playing, before startsAt) at localMs. */
  isCountingIn(localMs = this.now()) {
    const a = this._anchor;
    if (!a || !a.isPlaying) return false;
    return this.toServerTime(localMs) < startOf(a).start;
  }

  /** Local-clock instant at which the (grid) beat `beat` falls, or null when paused. */
  localTimeOfBeat(beat) {
    const a = this._anchor;
    if (!a || !a.isPlaying || !(a.tempo > 0)) return null;
    const { start, startPos } = startOf(a);
    const startBeat = a.beat + ((startPos - a.position) * a.tempo) / 60000;
    return this.toLocalTime(start + ((beat - startBeat) * 60000) / a.tempo);
  }

  /**
   * Calls cb on every beat while playing, count-in beats included, scheduled
   * against the synced clock. cb gets {beat, beatInBar, bar, countIn,
   * localTime, serverTime, lateMs}. Returns a function that unsubscribes.
   * opts: {beatsPerBar = 4, lookaheadMs = 0}: with lookahead the callback
   * comes that much early, so audio can be scheduled at `localTime`.
   */
  onBeat(cb, opts = {}) {
    const entry = { cb, beatsPerBar: opts.beatsPerBar || 4, lookaheadMs: Math.max(0, Number(opts.lookaheadMs) || 0), last: null, gridChanged: false, next: null };
    this._beatListeners.add(entry);
    this._scheduleBeat();
    return () => {
      this._beatListeners.delete(entry);
      if (!this._beatListeners.size) this._clearBeatTimer();
      else this._scheduleBeat();
    };
  }

  _clearBeatTimer() {
    if (this._beatTimer) clearTimeout(this._beatTimer);
    this._beatTimer = null;
  }

  // The next beat one listener is to hear, from its own lookahead and its
  // own last beat: a listener without lookahead is never called early
  // because another one asked for it.
  _nextBeatFor(e, now) {
    const a = this._anchor;
    const beatMs = 60000 / a.tempo;
    // A listener's first beat (after play, or when it subscribes) is the
    // next one still ahead of now, even when its lookahead moment has
    // passed: the first click of a count-in that arrived late is better
    // scheduled late, with lateMs saying so, than silently dropped.
    let beat = Math.floor(this.gridBeatAt(e.last ? now + e.lookaheadMs : now) + 1e-9) + 1;
    let when = this.localTimeOfBeat(beat);
    // Never repeat a beat already announced: the slewed clock may step back
    // a fraction of a millisecond, and a snapshot that leaves the grid where
    // it was (a message, a new member) must not re-announce the beat.
    if (e.last) {
      if (!e.gridChanged && beat <= e.last.beat) beat = e.last.beat + 1;
      else if (Math.abs(when - e.last.local) < beatMs / 4) beat += 1;
      when = this.localTimeOfBeat(beat);
    }
    // A beat that fell between the last one and now (a timer that fired
    // late) is still announced, late, rather than silently dropped.
    const prev = beat - 1;
    const prevWhen = this.localTimeOfBeat(prev);
    if (e.last && !e.gridChanged && prev > e.last.beat && now - prevWhen < beatMs / 2 && now + e.lookaheadMs >= prevWhen) {
      beat = prev;
      when = prevWhen;
    }
    e.gridChanged = false;
    return { beat, due: when - e.lookaheadMs };
  }

  _scheduleBeat() {
    this._clearBeatTimer();
    this._beatPlannedOffset = this._slew.set ? this._slew.offsetAt(this.now()) : NaN;
    if (!this._beatListeners.size || this._closed) return;
    const a = this._anchor;
    if (!a || !a.isPlaying || !(a.tempo > 0)) {
      for (const e of this._beatListeners) e.last = null;
      return;
    }
    const now = this.now();
    let due = Infinity;
    for (const e of this._beatListeners) {
      e.next = this._nextBeatFor(e, now);
      due = Math.min(due, e.next.due);
    }
    this._beatTimer = setTimeout(() => this._fireBeats(), Math.max(0, due - now));
  }

  _fireBeats() {
    this._beatTimer = null;
    const a = this._anchor;
    if (!a || !a.isPlaying) return;
    const now = this.now();
    for (const e of [...this._beatListeners]) {
      if (!e.next) continue;
      const localTime = this.localTimeOfBeat(e.next.beat);
      // Timers have millisecond granularity and may fire a little early
      // against this sub-ms clock: never announce a beat before its moment.
      const early = localTime - e.lookaheadMs - now;
      if (early > 0.05) continue; // planned again below
      const beat = e.next.beat;
      e.last = { beat, local: localTime };
      e.next = null;
      const bpb = e.beatsPerBar;
      const info = {
        beat,
        beatInBar: ((beat % bpb) + bpb) % bpb,
        bar: Math.floor(beat / bpb),
        countIn: this.toServerTime(localTime) < startOf(a).start - 0.5,
        localTime,
        serverTime: this.toServerTime(localTime),
        lateMs: now - (localTime - e.lookaheadMs),
      };
      try {
        e.cb(info);
      } catch (err) {
        setTimeout(() => {
          throw err;
        });
      }
    }
    this._scheduleBeat();
  }

  // ---------------------------------------------------------------- actions

  /**
   * Joins a session (creating it when absent). Resolves with its state.
   * opts: {displayName, role: "leader" | "follower"}.
   */
  async join(sessionId, { displayName, role, memberToken } = {}) {
    const payload = { sessionId };
    // Take our place back (see resume); kept for the join a connect sends.
    if (memberToken) payload.memberToken = this.memberToken = memberToken;
    if (displayName) payload.displayName = displayName;
    if (role) payload.role = role;
    if (this.opts.tickIntervalMs != null) payload.tickIntervalMs = this.opts.tickIntervalMs;
    if (this.sessionId && this.sessionId !== sessionId) this._reset();
    this._join = { sessionId, displayName, role };
    this._wantLeader = role === "leader";
    this.sessionId = sessionId;
    await this._whenConnected();
    const st = await this._request("join_session", payload);
    this._acceptState(st);
    return this.state;
  }

  /** Leaves the session; resolves when the server confirmed. */
  async leave() {
    const id = this.sessionId;
    this._join = null;
    this._wantLeader = false;
    if (!id) return;
    try {
      await this._request("leave_session", { sessionId: id }, { raw: true });
    } finally {
      this._reset();
    }
  }

  _reset() {
    this.state = null;
    this._anchor = null;
    this.sessionId = null;
    this.role = null;
    for (const e of this._beatListeners) e.last = null;
    this._clearBeatTimer();
  }

  setTempo(tempo) {
    return this._sessionRequest("set_tempo", { tempo });
  }

  /** Starts playback, optionally after delayMs (0-5000): every device starts on the same instant. */
  play({ delayMs = 0 } = {}) {
    return this._sessionRequest("play", delayMs ? { delayMs } : {});
  }

  /**
   * Starts on the next bar boundary of the band's shared beat grid: the
   * grid of beats counted from the server's epoch at the current tempo,
   * which every synced device computes alike (so a metronome running while
   * paused and the start agree). quantum: beats per boundary (default
   * beatsPerBar, default 4). A boundary closer than minLeadMs (default:
   * max(150 ms, 3 round trips)) is skipped so every device hears of the
   * start before it happens. Resolves with the state; rejects with code
   * QUANTUM_TOO_LONG when the boundary is more than 5 s away.
   */
  playOnNextBar({ quantum, beatsPerBar = 4, minLeadMs } = {}) {
    const q = quantum || beatsPerBar;
    const tempo = this.state?.tempoBpm ?? this.state?.tempo;
    if (!(tempo > 0)) return Promise.reject(new BandSyncError("NOT_IN_SESSION", "join a session first"));
    const lead = minLeadMs ?? Math.max(150, 3 * (Number.isFinite(this._sync.rttMs) ? this._sync.rttMs : 20));
    // Measured from when the server will read the request (half a round
    // trip from now), since it schedules the start from its own clock.
    const oneWay = Number.isFinite(this._sync.rttMs) ? this._sync.rttMs / 2 : 0;
    const delayMs = delayToNextBoundary(this.serverNow() + oneWay, tempo, q, lead);
    if (delayMs > MAX_DELAY_MS) {
      return Promise.reject(
        new BandSyncError("QUANTUM_TOO_LONG", `the next ${q}-beat boundary at ${tempo} BPM is ${Math.round(delayMs)} ms away (max ${MAX_DELAY_MS})`),
      );
    }
    return this.play({ delayMs });
  }

  /** Starts after a count-in of `bars` bars (plus leadMs so the first click is heard too). */
  countIn({ bars = 1, beatsPerBar = 4, leadMs = 250 } = {}) {
    const tempo = this.state?.tempoBpm ?? this.state?.tempo;
    if (!(tempo > 0)) return Promise.reject(new BandSyncError("NOT_IN_SESSION", "join a session first"));
    const beatMs = 60000 / tempo;
    let beats = bars * beatsPerBar;
    while (beats > 1 && beats * beatMs + leadMs > MAX_DELAY_MS) beats -= 1;
    return this.play({ delayMs: Math.min(MAX_DELAY_MS, beats * beatMs + leadMs) });
  }

  pause() {
    return this._sessionRequest("pause", {});
  }

  seek(positionMs) {
    return this._sessionRequest("seek", { position: positionMs });
  }

  stop() {
    return this._sessionRequest("stop", {});
  }

  updateMessage(message) {
    return this._sessionRequest("update_message", { message });
  }

  /** Takes the lead while leadership is vacant (or always under LEADER_POLICY=open). */
  async claimLeadership() {
    const st = await this._sessionRequest("set_role", { role: "leader" });
    this._wantLeader = true;
    return st;
  }

  /** Steps down; leadership stays vacant until someone claims it. */
  async releaseLeadership() {
    this._wantLeader = false;
    return this._sessionRequest("set_role", { role: "follower" });
  }

  /** Disconnects for good (no reconnect). */
  close() {
    this._closed = true;
    this._stopSyncTimer();
    this._clearBeatTimer();
    this.socket.close();
    this._setConnection("disconnected", { reason: "closed" });
  }

  async _sessionRequest(event, payload) {
    if (!this.sessionId) throw new BandSyncError("NOT_IN_SESSION", "join a session first");
    const st = await this._request(event, { sessionId: this.sessionId, ...payload });
    if (st) this._acceptState(st);
    return this.state;
  }

  _whenConnected(timeoutMs = this.opts.ackTimeoutMs * 2) {
    if (this.socket.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.socket.off("connect", ok);
        reject(new BandSyncError("DISCONNECTED", `not connected within ${timeoutMs} ms`));
      }, timeoutMs);
      const ok = () => {
        clearTimeout(timer);
        resolve();
      };
      this.socket.once("connect", ok);
    });
  }

  /**
   * Emits with an ack. Fails fast while disconnected: a transport command
   * buffered through a Wi-Fi drop and sent seconds later would surprise the
   * band more than an error does.
   */
  _request(event, payload, { raw = false, requireConnected = true } = {}) {
    return new Promise((resolve, reject) => {
      if (requireConnected && !this.socket.connected) {
        reject(new BandSyncError("DISCONNECTED", `cannot send ${event}: not connected`));
        return;
      }
      this.socket.timeout(this.opts.ackTimeoutMs).emit(event, payload, (err, res) => {
        if (err) {
          reject(new BandSyncError("TIMEOUT", `no answer to ${event} within ${this.opts.ackTimeoutMs} ms`));
          return;
        }
        if (res && res.ok === false) {
          const e = res.error || {};
          reject(new BandSyncError(e.code || "ERROR", e.message || `${event} failed`, res));
          return;
        }
        resolve(raw ? res : res?.state);
      });
    });
  }
}

/**
 * Where the current run starts: the server instant `start` at which the
 * position is `startPos`, from which it advances in real time.
 */
function startOf(a) {
  if (a.startsAt == null) return { start: a.serverTimestamp, startPos: a.position };
  // A snapshot taken during a count-in holds `position` at startsAt; one
  // taken after the start has it at serverTimestamp, on the same line.
  const startPos = a.position - Math.max(0, a.serverTimestamp - a.startsAt);
  return { start: a.startsAt, startPos };
}

/**
 * Milliseconds from serverNowMs to the next boundary of `quantum` beats on
 * the grid counted from the server's epoch at `tempo`, at least minLeadMs.
 */
export function delayToNextBoundary(serverNowMs, tempo, quantum, minLeadMs = 0) {
  const periodMs = (quantum * 60000) / tempo;
  let next = Math.ceil((serverNowMs + minLeadMs) / periodMs) * periodMs;
  if (next - serverNowMs < minLeadMs) next += periodMs;
  return next - serverNowMs;
}

function num(v, dflt) {
  return typeof v === "number" && Number.isFinite(v) ? v : dflt;
}

export default { connect, localNow, BandSyncClient, BandSyncError, delayToNextBoundary, VERSION };

// ------------------------------------------- songs, handover and resume
// PROTOCOL.md sections 8 and 9. Kept apart from the class body, which the
// clock model shares.

Object.assign(BandSyncClient.prototype, {
  _onSessionJoined(ev) {
    if (!ev || typeof ev.memberToken !== "string" || ev.sessionId !== this.sessionId) return;
    this.memberToken = ev.memberToken;
    this._emit("memberToken", { sessionId: ev.sessionId, memberToken: ev.memberToken });
  },

  /**
   * Joins in the place this device had before a reload: same name, same
   * role, and the lead if it led and the leader grace period has not run
   * out. A token that no longer matches joins as an ordinary member.
   */
  resume(sessionId, memberToken, opts = {}) {
    return this.join(sessionId, { ...opts, memberToken });
  },

  /** Adds a ChordPro chart to the setlist (leader); resolves with its summary. */
  async addSong(chordpro) {
    if (!this.sessionId) throw new BandSyncError("NOT_IN_SESSION", "join a session first");
    const res = await this._request("add_song", { sessionId: this.sessionId, chordpro }, { raw: true });
    if (res?.state) this._acceptState(res.state);
    return res.song;
  },

  /** Replaces a song's chart (leader); its version goes up. */
  updateSong(songId, chordpro) {
    return this._sessionRequest("update_song", { songId, chordpro });
  },

  removeSong(songId) {
    return this._sessionRequest("remove_song", { songId });
  },

  /** Moves a song to `index` (0-based, clamped to the setlist). */
  moveSong(songId, index) {
    return this._sessionRequest("move_song", { songId, index });
  },

  /** Makes a song current for the band: playback stops at 0, the chart's tempo and time apply. */
  selectSong(songId) {
    return this._sessionRequest("select_song", { songId });
  },

  /** Resolves with the song and its ChordPro text, exactly as it was added. */
  async getSong(songId) {
    if (!this.sessionId) throw new BandSyncError("NOT_IN_SESSION", "join a session first");
    const res = await this._request("get_song", { sessionId: this.sessionId, songId }, { raw: true });
    return res.song;
  },

  setTimeSignature(beatsPerBar, beatUnit) {
    return this._sessionRequest("set_time_signature", { beatsPerBar, beatUnit });
  },

  /** Bars of count-in before a scheduled start, 0-4. */
  setCountIn(bars) {
    return this._sessionRequest("set_count_in", { bars });
  },

  /** Hands the lead to a connected member (leader only). */
  transferLeadership(socketId) {
    return this._sessionRequest("transfer_leadership", { socketId });
  },
});
