// A model of the BandSync mobile app's networking layer and of what it
// renders, driving the official socket.io-client@4 as the app does (see
// apps/mobile/src/hooks/useSocket.js and screens/SessionScreen.js in the
// original project):
//
//   on every `connect`  -> join_session { sessionId }      (nothing else)
//   every 2.5 s         -> latency_probe { timestamp, sessionId }
//   every 5 s           -> heartbeat { timestamp }
//   state    = the last `snapshot` received, position merged from `scroll_tick`
//   members  = roomStats?.memberCount || 0  (room_stats is its only source)
//   status   = state?.message || "Waiting for session data..."
import { connect, once, waitUntil } from "./client.mjs";

export const uid = () => Math.random().toString(36).slice(2, 10);

/** What the app reads from each event, and the type it needs. */
const READS = {
  snapshot: {
    sessionId: "string", tempoBpm: "number", positionMs: "number", isPlaying: "boolean", serverTimestamp: "number",
    version: "number", memberCount: "number", message: "string", members: "array", leaderSocketId: "string|null",
  },
  scroll_tick: { sessionId: "string", positionMs: "number", tempoBpm: "number", serverTimestamp: "number", version: "number" },
  room_stats: { sessionId: "string", memberCount: "number", isPlaying: "boolean", tempo: "number", position: "number", leader: "string|null" },
};

function typeOf(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

/** Problems with the fields the app reads from one event (empty when fine). */
function unreadable(event, payload) {
  const problems = [];
  for (const [field, want] of Object.entries(READS[event])) {
    const got = typeOf(payload?.[field]);
    if (!want.split("|").includes(got) || (got === "number" && !Number.isFinite(payload[field]))) {
      problems.push(`${event}.${field} is ${got} ${JSON.stringify(payload?.[field])}, the app needs ${want}`);
    }
  }
  return problems;
}

/** A model of the mobile app's networking layer. */
export class MobileApp {
  constructor(url, sessionId, name, ioOpts = {}) {
    Object.assign(this, { url, sessionId, name, ioOpts });
    this.events = []; // {event, arg, at}
    this.problems = [];
    this.sentProbes = [];
    this.sentBeats = [];
    this.rtts = [];
    this.connects = 0;
    this.ids = [];
    this.snapshot = null; // the newest snapshot by version
    this.state = null; // the last snapshot received, as the app's setState keeps it
    this.roomStats = null; // the last room_stats for its session, as the app keeps it
  }

  /** What the app's screen shows now. */
  view() {
    return {
      members: this.roomStats?.memberCount || 0,
      status: this.state?.message || "Waiting for session data...",
      tempo: this.state?.tempoBpm ?? null,
      playing: this.state?.isPlaying ?? null,
      leader: this.state?.leaderSocketId ?? null,
    };
  }

  async start({ probeMs = 2500, heartbeatMs = 5000 } = {}) {
    this.socket = await connect(this.url, { reconnectionDelay: 100, reconnectionDelayMax: 500, ...this.ioOpts });
    const s = this.socket;
    s.onAny((event, arg) => {
      this.events.push({ event, arg, at: Date.now() });
      if (READS[event]) this.problems.push(...unreadable(event, arg));
      if (event === "snapshot" && (!this.snapshot || arg.version >= this.snapshot.version)) this.snapshot = arg;
      if (event === "snapshot") this.state = arg;
      if (event === "scroll_tick" && arg.sessionId === this.sessionId && this.state) this.state = { ...this.state, position: arg.positionMs };
      if (event === "room_stats" && arg.sessionId === this.sessionId) this.roomStats = arg;
      if (event === "heartbeat_response") this.rtts.push(Date.now() - arg.timestamp);
    });
    const join = () => {
      this.connects++;
      this.ids.push(s.id);
      s.emit("join_session", { sessionId: this.sessionId });
    };
    s.on("connect", join);
    join(); // the first `connect` fired before the listener existed
    this.timers = [
      setInterval(() => {
        const timestamp = Date.now();
        this.sentProbes.push(timestamp);
        s.emit("latency_probe", { timestamp, sessionId: this.sessionId });
      }, probeMs),
      setInterval(() => {
        const timestamp = Date.now();
        this.sentBeats.push(timestamp);
        s.emit("heartbeat", { timestamp });
      }, heartbeatMs),
    ];
    await waitUntil(() => this.snapshot, 3000, `${this.name}'s first snapshot`);
    return this;
  }

  of(event) {
    return this.events.filter((e) => e.event === event);
  }

  /** Drops the connection under the app (as a network change does) and waits for the automatic reconnect. */
  async dropAndReconnect() {
    const s = this.socket;
    const idBefore = s.id;
    const down = once(s, "disconnect", 3000);
    const up = once(s, "connect", 10_000);
    s.io.engine.close();
    const reason = await down;
    await up;
    return { reason, idBefore, idAfter: s.id, recovered: s.recovered };
  }

  /** A tap in the app: an emit with no ack, as the app sends every command. */
  tap(event, payload = {}) {
    this.socket.emit(event, { sessionId: this.sessionId, ...payload });
  }

  /** The app is killed (or the phone dies): the connection drops and never comes back. */
  kill() {
    for (const t of this.timers ?? []) clearInterval(t);
    this.socket.io.reconnection(false);
    this.socket.io.engine.close();
  }

  stop() {
    for (const t of this.timers ?? []) clearInterval(t);
    this.socket?.close();
  }
}

