// Contract end-to-end tests: the whole BandSync event and HTTP contract
// (docs/protocol.md, plus the lead's decisions in issue #3), driven
// by the official socket.io-client@4 against the real server binary.
//
// Every test uses its own session id, so tests within one server do not see
// each other. "Changes nothing" is checked against GET /sessions/:id (the
// server's own view: version, tempo, message, transport, leader, members) and
// against what the other members receive (no broadcast at all).
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { startServer, httpGet, assertCleanLogs, freePort } from "./lib/server.mjs";
import { connect, once, emitAck, collect, closeAllClients, sleep, waitUntil, wsUrl } from "./lib/client.mjs";
import { CLIENT_EVENTS, SERVER_EVENTS, SONGS_TEST_CLIENT_EVENTS, SONGS_TEST_SERVER_EVENTS, missingFrom } from "./lib/protocol.mjs";

const T = { timeout: 30_000 };
const uid = () => Math.random().toString(36).slice(2, 10);
const sessionName = (prefix) => `c-${prefix}-${uid()}`;

// ---- wire shapes (docs/protocol.md, "Server events", plus the lead's extras) ----
const SNAPSHOT_KEYS = [
  "sessionId", "message", "tempo", "tempoBpm", "isPlaying", "position", "positionMs",
  "leaderSocketId", "members", "settings", "memberCount", "createdAt", "lastActiveAt",
  "serverTimestamp", "version",
  // decided by the lead on top of section 2:
  "startsAt", "beat", "leaderTerm",
  // songs and setlists (docs/protocol.md, "Songs and setlists"):
  "setlist", "songId", "timeSignature", "countInBars",
];
const MEMBER_KEYS = ["socketId", "displayName", "role", "joinedAt", "connected"];
const KEYS = {
  play: ["sessionId", "tempoBpm", "position", "positionMs", "serverTimestamp", "startsAt"],
  pause: ["sessionId", "position", "positionMs", "serverTimestamp"],
  seek: ["sessionId", "position", "positionMs", "serverTimestamp"],
  stop: ["sessionId", "serverTimestamp"],
  sync_response: ["sessionId", "positionMs", "tempoBpm", "isPlaying", "serverTime"],
  room_stats: ["sessionId", "memberCount", "isPlaying", "tempo", "position", "leader"],
  user_joined: ["member", "memberCount"],
  user_left: ["socketId", "memberCount", "newLeader"],
  role_changed: ["socketId", "role", "previousLeader", "reason", "timestamp"],
  heartbeat_response: ["timestamp", "clientTimestamp", "serverTimestamp"],
  latency_response: ["clientTimestamp", "serverTimestamp"],
  heartbeat: ["timestamp"],
  clock_sync: ["ok", "t0", "t1", "t2"],
  error: ["code", "message", "event"],
  rate_limit_exceeded: ["event", "limit", "windowMs", "retryAfterMs", "violations"],
};
// scroll_tick: the protocol's five fields; the server also sends `beat`
// (the beat position, like the snapshot's), tolerated as a documented extra.
const TICK_KEYS = ["sessionId", "positionMs", "tempoBpm", "serverTimestamp", "version"];
const TICK_EXTRA = ["beat"];

const show = (v) => {
  if (v === NONE) return "(no payload)";
  const j = JSON.stringify(v);
  return j === undefined ? String(v) : j.length > 160 ? `${j.slice(0, 160)}... (${j.length} chars)` : j;
};

function assertKeys(obj, keys, what) {
  assert.ok(obj && typeof obj === "object" && !Array.isArray(obj), `${what}: not an object: ${show(obj)}`);
  assert.deepEqual(Object.keys(obj).sort(), [...keys].sort(), `${what}: field names differ: ${show(obj)}`);
}

function assertSnapshot(s, what = "snapshot") {
  assertKeys(s, SNAPSHOT_KEYS, what);
  assert.equal(typeof s.sessionId, "string");
  assert.equal(typeof s.message, "string");
  assert.equal(typeof s.tempo, "number");
  assert.equal(s.tempoBpm, s.tempo, `${what}: tempo and tempoBpm differ`);
  assert.equal(typeof s.isPlaying, "boolean");
  assert.equal(typeof s.position, "number");
  assert.equal(s.positionMs, s.position, `${what}: position and positionMs differ`);
  assert.ok(s.leaderSocketId === null || typeof s.leaderSocketId === "string", `${what}: leaderSocketId ${show(s.leaderSocketId)}`);
  assert.ok(Array.isArray(s.members), `${what}: members is not an array`);
  for (const m of s.members) {
    assertKeys(m, MEMBER_KEYS, `${what} member`);
    assert.ok(m.role === "leader" || m.role === "follower", `${what}: member role ${m.role}`);
    assert.equal(typeof m.connected, "boolean");
    assert.equal(typeof m.joinedAt, "number");
  }
  assertKeys(s.settings, ["maxMembers"], `${what}.settings`);
  assert.equal(s.memberCount, s.members.length, `${what}: memberCount vs members`);
  for (const f of ["createdAt", "lastActiveAt", "serverTimestamp", "version", "beat", "leaderTerm"]) {
    assert.equal(typeof s[f], "number", `${what}.${f} is ${show(s[f])}`);
  }
  assert.ok(Number.isInteger(s.version) && s.version >= 0, `${what}.version ${s.version}`);
  if (s.isPlaying) assert.equal(typeof s.startsAt, "number", `${what}: playing without startsAt`);
  else assert.equal(s.startsAt, null, `${what}: paused with startsAt ${s.startsAt}`);
  const leaders = s.members.filter((m) => m.role === "leader").map((m) => m.socketId);
  assert.deepEqual(leaders, s.leaderSocketId ? [s.leaderSocketId] : [], `${what}: member roles disagree with leaderSocketId`);
}

function assertTick(t, what = "scroll_tick") {
  assert.ok(t && typeof t === "object");
  const keys = Object.keys(t).filter((k) => !TICK_EXTRA.includes(k));
  assert.deepEqual(keys.sort(), [...TICK_KEYS].sort(), `${what}: field names differ: ${show(t)}`);
  for (const f of ["positionMs", "tempoBpm", "serverTimestamp", "version"]) assert.equal(typeof t[f], "number", `${what}.${f}`);
}

// ---- helpers ------------------------------------------------------------
const NONE = Symbol("no payload");

/** Emits with an ack; payload NONE sends the event with no argument at all. */
async function send(socket, event, payload, timeoutMs = 3000) {
  const t = socket.timeout(timeoutMs);
  try {
    return payload === NONE ? await t.emitWithAck(event) : await t.emitWithAck(event, payload);
  } catch (err) {
    throw new Error(`no ack for '${event}' ${show(payload)} within ${timeoutMs} ms (${err?.message ?? err})`);
  }
}

async function expectOk(socket, event, payload) {
  const ack = await send(socket, event, payload);
  assert.equal(ack?.ok, true, `${event} ${show(payload)} -> ${show(ack)}`);
  return ack;
}

async function expectCode(socket, event, payload, code, timeoutMs = 3000) {
  const ack = await send(socket, event, payload, timeoutMs);
  assert.equal(ack?.ok, false, `${event} ${show(payload)} should be refused with ${code}, got ${show(ack)}`);
  assertKeys(ack, ["ok", "error"], `${event} failure ack`);
  assertKeys(ack.error, ["code", "message"], `${event} failure ack .error`);
  assert.equal(ack.error.code, code, `${event} ${show(payload)}: code ${ack.error.code} (${ack.error.message}), want ${code}`);
  assert.ok(typeof ack.error.message === "string" && ack.error.message.length > 0, `${event}: empty error message`);
  return ack;
}

/** The same refusal without an ack: an `error` event {code, message, event}. */
async function expectErrorEvent(socket, event, payload, code, timeoutMs = 3000, checkName = (name) => name === event) {
  const got = once(socket, "error", timeoutMs);
  if (payload === NONE) socket.emit(event);
  else socket.emit(event, payload);
  let err;
  try {
    err = await got;
  } catch {
    throw new Error(`'${event}' ${show(payload)} without ack: no 'error' event (want ${code})`);
  }
  assertKeys(err, KEYS.error, `error event for ${event}`);
  assert.equal(err.code, code, `${event} ${show(payload)} without ack: code ${err.code} (${err.message}), want ${code}`);
  assert.ok(checkName(err.event), `error event names event ${show(err.event)}, want ${show(event)}`);
  return err;
}

async function joinAck(socket, sessionId, displayName, extra = {}) {
  const payload = { sessionId, ...(displayName ? { displayName } : {}), ...extra };
  const ack = await expectOk(socket, "join_session", payload);
  assertKeys(ack, ["ok", "state", "memberToken"], "join_session ack"); // memberToken: docs/protocol.md, "Handing over and coming back"
  assertSnapshot(ack.state, "join_session ack.state");
  return ack.state;
}

/** Connects `n` clients and joins them in order (the first leads). */
async function band(url, sessionId, names, opts = {}) {
  const sockets = [];
  for (const name of names) {
    const s = await connect(url, opts);
    await joinAck(s, sessionId, name);
    sockets.push(s);
  }
  return sockets;
}

async function getState(srv, sessionId) {
  const res = await httpGet(`${srv.url}/sessions/${encodeURIComponent(sessionId)}`);
  assert.equal(res.status, 200, `GET /sessions/${sessionId}: ${res.status} ${res.body.slice(0, 200)}`);
  return res.json();
}

/** The parts of a session state that only a change may alter. */
function essence(s) {
  return {
    version: s.version,
    tempo: s.tempo,
    message: s.message,
    isPlaying: s.isPlaying,
    position: s.isPlaying ? "(playing)" : s.position,
    startsAt: s.startsAt,
    leaderSocketId: s.leaderSocketId,
    leaderTerm: s.leaderTerm,
    members: s.members.map((m) => `${m.socketId}:${m.role}:${m.displayName}:${m.connected}`),
  };
}

/**
 * One acked round trip per socket. The server writes each connection's
 * frames in order, so once the ack is back every broadcast caused by earlier
 * commands has reached that socket: a recorder started after this sees only
 * what comes next.
 */
async function settle(...sockets) {
  await Promise.all(sockets.map((s) => send(s, "heartbeat", { timestamp: 0 })));
}

/** Records everything a socket receives except the periodic events. */
function recorder(socket) {
  const log = [];
  // session_joined is the joiner's private token (docs/protocol.md),
  // not a change of the session.
  const periodic = new Set(["scroll_tick", "heartbeat", "heartbeat_response", "latency_response", "error", "session_joined"]);
  socket.onAny((event, arg) => {
    if (!periodic.has(event)) log.push({ event, arg });
  });
  return {
    log,
    mark: () => log.length,
    since: (m) => log.slice(m),
    summary: (m = 0) => log.slice(m).map((e) => `${e.event}#${e.arg?.version ?? ""}`).join(", "),
  };
}

const near = (a, b, eps, what) =>
  assert.ok(Math.abs(a - b) <= eps, `${what}: ${a} vs ${b} (|diff| ${Math.abs(a - b)} > ${eps})`);

// =========================================================================
describe("contract: sessions, transport, leadership (LEADER_POLICY=strict)", () => {
  let srv;
  before(async () => {
    srv = await startServer({
      name: "contract",
      env: {
        LEADER_GRACE_MS: "500",
        HEARTBEAT_INTERVAL: "250",
        // This suite sends hundreds of events per socket on purpose; the
        // rate limit has its own suite below.
        RATE_LIMIT_MAX_REQUESTS: "100000",
        HTTP_RATE_LIMIT_MAX_REQUESTS: "100000",
      },
    });
  });
  after(async () => {
    closeAllClients();
    await srv?.stop(); // no-op when the last test already stopped it
  });

  test("two members: joiner snapshot, user_joined/room_stats/snapshot to the room, first member leads", T, async () => {
    const id = sessionName("two");
    const a = await connect(srv.url);
    const aLog = recorder(a);
    const snapA = await joinAck(a, id, "Alice");
    assert.equal(snapA.sessionId, id);
    assert.equal(snapA.leaderSocketId, a.id, "first member of an empty session leads");
    assert.equal(snapA.memberCount, 1);
    assert.deepEqual(snapA.members.map((m) => [m.socketId, m.displayName, m.role, m.connected]), [[a.id, "Alice", "leader", true]]);
    assert.equal(snapA.tempo, 120, "default tempo");
    assert.equal(snapA.isPlaying, false);
    assert.equal(snapA.position, 0);
    assert.equal(snapA.message, "Alice is leading", "the status line the mobile app shows");
    assert.equal(typeof snapA.settings.maxMembers, "number");
    // The joiner also gets the `snapshot` event, once.
    await waitUntil(() => aLog.log.some((e) => e.event === "snapshot"), 2000, "A's snapshot event");
    assertSnapshot(aLog.log.find((e) => e.event === "snapshot").arg);

    const b = await connect(srv.url);
    const bLog = recorder(b);
    const mark = aLog.mark();
    const snapB = await joinAck(b, id, "Bob");
    assert.equal(snapB.leaderSocketId, a.id, "the second member must not take over");
    assert.equal(snapB.memberCount, 2);
    assert.equal(snapB.members.find((m) => m.socketId === b.id)?.role, "follower");
    assert.equal(snapB.version, snapA.version + 1, "a join is one change");

    await waitUntil(() => aLog.since(mark).some((e) => e.event === "snapshot"), 2000, "A's snapshot after B joined");
    await sleep(100);
    const seenA = aLog.since(mark);
    const joined = seenA.filter((e) => e.event === "user_joined");
    assert.equal(joined.length, 1, `A got ${joined.length} user_joined: ${aLog.summary(mark)}`);
    assertKeys(joined[0].arg, KEYS.user_joined, "user_joined");
    assertKeys(joined[0].arg.member, MEMBER_KEYS, "user_joined.member");
    assert.deepEqual(
      [joined[0].arg.member.socketId, joined[0].arg.member.displayName, joined[0].arg.member.role, joined[0].arg.member.connected],
      [b.id, "Bob", "follower", true],
    );
    assert.equal(joined[0].arg.memberCount, 2);
    const stats = seenA.filter((e) => e.event === "room_stats");
    assert.equal(stats.length, 1, `A got ${stats.length} room_stats: ${aLog.summary(mark)}`);
    assertKeys(stats[0].arg, KEYS.room_stats, "room_stats");
    assert.deepEqual(stats[0].arg, { sessionId: id, memberCount: 2, isPlaying: false, tempo: 120, position: 0, leader: a.id });
    const snaps = seenA.filter((e) => e.event === "snapshot");
    assert.equal(snaps.length, 1, `A got ${snaps.length} snapshots for one join: ${aLog.summary(mark)}`);
    assertSnapshot(snaps[0].arg);
    assert.equal(snaps[0].arg.version, snapB.version);
    // B itself gets each event once, addressed to it, in the original
    // server's order: the mobile app's member count comes only from room_stats.
    await waitUntil(() => bLog.log.some((e) => e.event === "user_joined"), 2000, "B's user_joined");
    assert.deepEqual(bLog.log.map((e) => e.event), ["snapshot", "room_stats", "user_joined"], `joiner got ${bLog.summary()}`);
    assert.equal(bLog.log[1].arg.memberCount, 2);
  });

  test("three members: room broadcasts reach everyone, member list and counts agree", T, async () => {
    const id = sessionName("three");
    const [a, b, c] = await band(srv.url, id, ["A", "B", "C"]);
    await settle(a, b, c);
    const logs = [a, b, c].map(recorder);
    const marks = logs.map((l) => l.mark());
    await expectOk(a, "set_tempo", { sessionId: id, tempo: 96 });
    await waitUntil(() => logs.every((l, i) => l.since(marks[i]).some((e) => e.event === "snapshot")), 2000, "snapshot on all 3");
    await settle(a, b, c);
    for (const [i, l] of logs.entries()) {
      const s = l.since(marks[i]).filter((e) => e.event === "snapshot");
      assert.equal(s.length, 1);
      assertSnapshot(s[0].arg);
      assert.equal(s[0].arg.tempoBpm, 96);
      assert.deepEqual(s[0].arg.members.map((m) => m.socketId), [a.id, b.id, c.id], "members in join order");
      assert.deepEqual(s[0].arg.members.map((m) => m.role), ["leader", "follower", "follower"]);
    }
    const st = await getState(srv, id);
    assertSnapshot(st, "GET /sessions/:id");
    assert.equal(st.memberCount, 3);
  });

  test("a follower's play/pause/seek/set_tempo/stop get NOT_LEADER and change nothing", T, async () => {
    const id = sessionName("rules");
    const [a, b, c] = await band(srv.url, id, ["Lead", "F1", "F2"]);
    await expectOk(a, "set_tempo", { sessionId: id, tempo: 111 });
    await expectOk(a, "seek", { sessionId: id, position: 7000 });
    const before = essence(await getState(srv, id));
    await settle(a, b, c);
    const logs = [a, b, c].map(recorder);

    for (const s of [b, c]) {
      await expectCode(s, "play", { sessionId: id }, "NOT_LEADER");
      await expectCode(s, "play", { sessionId: id, delayMs: 100 }, "NOT_LEADER");
      await expectCode(s, "pause", { sessionId: id }, "NOT_LEADER");
      await expectCode(s, "seek", { sessionId: id, position: 1 }, "NOT_LEADER");
      await expectCode(s, "set_tempo", { sessionId: id, tempo: 200 }, "NOT_LEADER");
      await expectCode(s, "stop", { sessionId: id }, "NOT_LEADER");
      // Without an ack the refusal arrives as an `error` event.
      for (const [ev, p] of [["play", {}], ["pause", {}], ["seek", { position: 1 }], ["set_tempo", { tempo: 200 }], ["stop", {}]]) {
        await expectErrorEvent(s, ev, { sessionId: id, ...p }, "NOT_LEADER");
      }
    }
    await sleep(150);
    assert.deepEqual(essence(await getState(srv, id)), before, "a follower's transport commands changed the session");
    for (const [i, l] of logs.entries()) assert.equal(l.log.length, 0, `member ${i} received ${l.summary()}`);

    // Once playing, a follower's pause/seek/stop still cannot touch it.
    await expectOk(a, "play", { sessionId: id });
    const playing = essence(await getState(srv, id));
    await expectCode(b, "pause", { sessionId: id }, "NOT_LEADER");
    await expectCode(b, "stop", { sessionId: id }, "NOT_LEADER");
    await expectCode(b, "seek", { sessionId: id, position: 0 }, "NOT_LEADER");
    const now = await getState(srv, id);
    assert.deepEqual(essence(now), playing);
    assert.equal(now.isPlaying, true);
    // The leader's own commands work (the refusals above were about the role).
    await expectOk(a, "stop", { sessionId: id });
  });

  test("set_role: refused while a leader is present, allowed when vacant; role_changed and snapshot", T, async () => {
    const id = sessionName("role");
    const [a, b, c] = await band(srv.url, id, ["A", "B", "C"]);
    // A leads by default; asking for it makes the lead claimed, protected.
    await expectOk(a, "set_role", { sessionId: id, role: "leader" });
    const v0 = (await getState(srv, id)).version;
    await expectCode(b, "set_role", { sessionId: id, role: "leader" }, "NOT_LEADER");
    await expectErrorEvent(c, "set_role", { sessionId: id, role: "leader" }, "NOT_LEADER");
    let st = await getState(srv, id);
    assert.equal(st.leaderSocketId, a.id);
    assert.equal(st.version, v0, "a refused set_role changed the version");

    // A follower asking to be a follower: accepted, nothing changes.
    const noop = await expectOk(b, "set_role", { sessionId: id, role: "follower" });
    assert.equal(noop.state.version, v0);

    // A joiner asking for leadership while A leads stays a follower.
    const d = await connect(srv.url);
    const snapD = await joinAck(d, id, "D", { role: "leader" });
    assert.equal(snapD.leaderSocketId, a.id, "join with role leader took over under LEADER_POLICY=strict");
    assert.equal(snapD.members.find((m) => m.socketId === d.id)?.role, "follower");

    // The leader steps down: leadership is vacant.
    const rcB = once(b, "role_changed", 2000);
    const snapB = once(b, "snapshot", 2000, (s) => s.leaderSocketId === null);
    const down = await expectOk(a, "set_role", { sessionId: id, role: "follower" });
    const rc = await rcB;
    assertKeys(rc, KEYS.role_changed, "role_changed");
    assert.equal(rc.socketId, a.id);
    assert.equal(rc.role, "follower");
    assert.equal(rc.previousLeader, a.id);
    assert.equal(rc.reason, "stepped_down");
    assert.equal(typeof rc.timestamp, "number");
    const sb = await snapB;
    assertSnapshot(sb);
    assert.equal(sb.version, down.state.version);
    assert.equal(down.state.leaderSocketId, null);
    // With no leader nobody drives transport.
    await expectCode(a, "play", { sessionId: id }, "NOT_LEADER");
    await expectCode(b, "play", { sessionId: id }, "NOT_LEADER");

    // Vacant: C claims it.
    const rcA = once(a, "role_changed", 2000);
    const claimed = await expectOk(c, "set_role", { sessionId: id, role: "leader" });
    assert.equal(claimed.state.leaderSocketId, c.id);
    assert.equal(claimed.state.version, down.state.version + 1);
    const rc2 = await rcA;
    assertKeys(rc2, KEYS.role_changed, "role_changed");
    assert.deepEqual([rc2.socketId, rc2.role, rc2.previousLeader, rc2.reason], [c.id, "leader", null, "claimed"]);
    // ... and now B is refused again, and C drives transport.
    await expectCode(b, "set_role", { sessionId: id, role: "leader" }, "NOT_LEADER");
    await expectCode(a, "set_role", { sessionId: id, role: "leader" }, "NOT_LEADER");
    await expectOk(c, "play", { sessionId: id });
    st = await getState(srv, id);
    assert.equal(st.leaderSocketId, c.id);
    assert.equal(st.isPlaying, true);
    assert.deepEqual(st.members.map((m) => m.role), ["follower", "follower", "leader", "follower"]);
  });

  test("leader leaves: user_left names the new leader (most senior), role_changed leader_left", T, async () => {
    const id = sessionName("leave");
    const [a, b, c] = await band(srv.url, id, ["A", "B", "C"]);
    const leftC = once(c, "user_left", 2000);
    const rcC = once(c, "role_changed", 2000);
    const statsC = once(c, "room_stats", 2000, (s) => s.memberCount === 2);
    const ack = await send(a, "leave_session", { sessionId: id });
    assert.deepEqual(ack, { ok: true }, `leave_session ack ${show(ack)}`);
    const ul = await leftC;
    assertKeys(ul, KEYS.user_left, "user_left");
    assert.deepEqual(ul, { socketId: a.id, memberCount: 2, newLeader: b.id });
    const rc = await rcC;
    assert.deepEqual([rc.socketId, rc.role, rc.previousLeader, rc.reason], [b.id, "leader", a.id, "leader_left"]);
    const rs = await statsC;
    assert.equal(rs.leader, b.id);
    // A is out: its commands are NOT_IN_SESSION; B leads.
    await expectCode(a, "sync_request", { sessionId: id }, "NOT_IN_SESSION");
    await expectCode(a, "update_message", { sessionId: id, message: "x" }, "NOT_IN_SESSION");
    await expectCode(a, "leave_session", { sessionId: id }, "NOT_IN_SESSION");
    await expectOk(b, "play", { sessionId: id });
    // A follower that closes its socket (explicit disconnect) leaves too.
    const left2 = once(b, "user_left", 3000);
    const cId = c.id; // socket.io-client forgets the id on disconnect
    c.disconnect();
    assert.deepEqual(await left2, { socketId: cId, memberCount: 1, newLeader: b.id });
  });

  test("leader disconnect: leadership held LEADER_GRACE_MS, playback continues, most senior connected member leads", T, async () => {
    const id = sessionName("grace");
    const a = await connect(srv.url, { reconnection: false });
    await joinAck(a, id, "A", { role: "leader" });
    const aId = a.id; // socket.io-client forgets the id on disconnect
    const [b, c] = await band(srv.url, id, ["B", "C"]);
    await expectOk(a, "play", { sessionId: id });
    const ticksC = collect(c, "scroll_tick");
    const rcB = once(b, "role_changed", 5000);
    const detached = once(c, "snapshot", 3000, (s) => s.members.some((m) => m.socketId === aId && !m.connected));
    const droppedAt = Date.now();
    a.io.engine.close(); // the network goes away (not a deliberate disconnect)

    const snap = await detached;
    assert.equal(snap.leaderSocketId, aId, "the dropped leader must keep leadership during the grace period");
    assert.equal(snap.isPlaying, true, "playback must continue through the grace period");
    // B cannot take over during the grace period.
    await expectCode(b, "set_role", { sessionId: id, role: "leader" }, "NOT_LEADER");

    const rc = await rcB;
    const heldMs = Date.now() - droppedAt;
    assertKeys(rc, KEYS.role_changed, "role_changed");
    assert.deepEqual([rc.socketId, rc.role, rc.previousLeader, rc.reason], [b.id, "leader", aId, "leader_disconnected"]);
    assert.ok(heldMs >= 450, `leadership moved ${heldMs} ms after the drop; LEADER_GRACE_MS is 500`);
    const st = await getState(srv, id);
    assert.equal(st.leaderSocketId, b.id);
    assert.equal(st.isPlaying, true, "handover stopped playback");
    const ticksInGrace = ticksC.filter((t) => t.serverTimestamp > droppedAt + 50 && t.serverTimestamp < droppedAt + 450);
    assert.ok(ticksInGrace.length > 5, `only ${ticksInGrace.length} ticks during the grace period: playback stalled`);
    await expectOk(b, "pause", { sessionId: id });
  });

  test("every server event has its field names checked (here, or in songs.test.mjs)", () => {
    // snapshot and scroll_tick have their own checks (assertSnapshot, assertTick).
    const checked = [...Object.keys(KEYS), "snapshot", "scroll_tick", ...SONGS_TEST_SERVER_EVENTS];
    assert.deepEqual(missingFrom(SERVER_EVENTS, checked), [], "server events whose payload no test checks: add them to KEYS");
    assert.deepEqual(missingFrom(checked, SERVER_EVENTS), [], "KEYS checks events the server does not list in internal/protocol");
  });

  test("every server event's field names: play/pause/seek/stop/sync_response/heartbeat_response/latency_response/heartbeat/clock_sync", T, async () => {
    const id = sessionName("fields");
    const [a, b] = await band(srv.url, id, ["A", "B"]);
    await settle(b);
    const bLog = recorder(b);

    const pl = once(b, "play", 2000);
    await expectOk(a, "play", { sessionId: id });
    const p = await pl;
    assertKeys(p, KEYS.play, "play");
    assert.equal(p.sessionId, id);
    assert.equal(p.position, p.positionMs);
    assert.equal(p.tempoBpm, 120);
    assert.equal(typeof p.startsAt, "number");
    near(p.startsAt, p.serverTimestamp, 1, "play without delayMs starts at once");

    const tick = await once(b, "scroll_tick", 2000);
    assertTick(tick);
    assert.equal(tick.sessionId, id);

    const ps = once(b, "pause", 2000);
    await expectOk(a, "pause", { sessionId: id });
    const pe = await ps;
    assertKeys(pe, KEYS.pause, "pause");
    assert.equal(pe.position, pe.positionMs);

    const sk = once(b, "seek", 2000);
    await expectOk(a, "seek", { sessionId: id, position: 2500 });
    const se = await sk;
    assertKeys(se, KEYS.seek, "seek");
    assert.deepEqual([se.sessionId, se.position, se.positionMs], [id, 2500, 2500]);

    const sp = once(b, "stop", 2000);
    await expectOk(a, "stop", { sessionId: id });
    const so = await sp;
    assertKeys(so, KEYS.stop, "stop");
    assert.equal(so.sessionId, id);

    const sr = once(b, "sync_response", 2000);
    const sAck = await expectOk(b, "sync_request", { sessionId: id });
    assertKeys(sAck, ["ok", "sync"], "sync_request ack");
    assertKeys(sAck.sync, KEYS.sync_response, "sync_request ack.sync");
    const sre = await sr;
    assertKeys(sre, KEYS.sync_response, "sync_response");
    assert.deepEqual([sre.sessionId, sre.positionMs, sre.tempoBpm, sre.isPlaying], [id, 0, 120, false]);
    // Without an ack, the event alone.
    const sr2 = once(b, "sync_response", 2000);
    b.emit("sync_request", { sessionId: id });
    assertKeys(await sr2, KEYS.sync_response, "sync_response (no ack)");

    const ts = Date.now() - 1234.5;
    const hr = once(b, "heartbeat_response", 2000);
    b.emit("heartbeat", { timestamp: ts });
    const h = await hr;
    assertKeys(h, KEYS.heartbeat_response, "heartbeat_response");
    assert.equal(h.timestamp, ts, "heartbeat_response.timestamp must echo the client's timestamp");
    assert.equal(h.clientTimestamp, ts, "heartbeat_response.clientTimestamp must echo the client's timestamp");
    assert.equal(typeof h.serverTimestamp, "number");
    // With an ack too; and with no payload at all (timestamp optional).
    const hAck = await expectOk(b, "heartbeat", { timestamp: ts });
    assert.equal(hAck.timestamp, ts);
    const hr0 = once(b, "heartbeat_response", 2000);
    const h0 = await expectOk(b, "heartbeat", NONE);
    assert.equal(typeof h0.serverTimestamp, "number");
    const h0e = await hr0;
    assertKeys(h0e, KEYS.heartbeat_response, "heartbeat_response to an empty heartbeat");
    assert.equal(h0e.timestamp, null);
    const hr1 = once(b, "heartbeat_response", 2000);
    b.emit("heartbeat");
    assert.equal(typeof (await hr1).serverTimestamp, "number", "heartbeat without payload and ack must be answered");

    const lr = once(b, "latency_response", 2000);
    const probeTs = Date.now();
    b.emit("latency_probe", { timestamp: probeTs, sessionId: id });
    const l = await lr;
    assertKeys(l, KEYS.latency_response, "latency_response");
    assert.equal(l.clientTimestamp, probeTs);
    assert.equal(typeof l.serverTimestamp, "number");
    await expectOk(b, "latency_probe", { timestamp: probeTs }); // sessionId optional

    const hb = await once(b, "heartbeat", 3000); // HEARTBEAT_INTERVAL=250
    assertKeys(hb, KEYS.heartbeat, "server heartbeat");
    assert.equal(typeof hb.timestamp, "number");
    assert.deepEqual(await send(b, "heartbeat_response", { timestamp: hb.timestamp, clientTimestamp: Date.now() }), { ok: true });

    const t0 = Date.now();
    const cs = await send(b, "clock_sync", { t0 });
    const t3 = Date.now();
    assertKeys(cs, KEYS.clock_sync, "clock_sync ack");
    assert.equal(cs.ok, true);
    assert.equal(cs.t0, t0);
    assert.ok(cs.t1 >= t0 && cs.t2 >= cs.t1 && cs.t2 <= t3 + 1, `clock_sync times out of order: t0 ${t0} t1 ${cs.t1} t2 ${cs.t2} t3 ${t3}`);
    // Without an ack, the answer is a clock_sync event.
    const ce = once(b, "clock_sync", 2000);
    b.emit("clock_sync", { t0: 42 });
    const csEvent = await ce;
    assertKeys(csEvent, KEYS.clock_sync, "clock_sync event");
    assert.equal(csEvent.t0, 42);

    // None of those requests made the server broadcast anything to B.
    assert.deepEqual(
      bLog.log.filter((e) => !["play", "pause", "seek", "stop", "snapshot", "sync_response", "clock_sync"].includes(e.event)).map((e) => e.event),
      [],
    );
  });

  test("play with delayMs: startsAt = now + delay, position holds until then, then runs from startsAt", T, async () => {
    const id = sessionName("delay");
    const [a, b] = await band(srv.url, id, ["A", "B"]);
    await expectOk(a, "seek", { sessionId: id, position: 3000 });
    const ticks = collect(b, "scroll_tick");
    const pl = once(b, "play", 2000);
    const sent = Date.now();
    const ack = await expectOk(a, "play", { sessionId: id, delayMs: 700 });
    const acked = Date.now();
    const p = await pl;
    assertKeys(p, KEYS.play, "play");
    near(p.startsAt - p.serverTimestamp, 700, 0.01, "play.startsAt - play.serverTimestamp");
    assert.ok(p.startsAt >= sent + 700 - 1 && p.startsAt <= acked + 700 + 1, `startsAt ${p.startsAt} not in [${sent + 700}, ${acked + 700}]`);
    assert.equal(p.position, 3000);
    assert.equal(ack.state.isPlaying, true);
    assert.equal(ack.state.startsAt, p.startsAt, "snapshot.startsAt differs from play.startsAt");
    assert.equal(ack.state.position, 3000);

    // Before startsAt the position holds.
    await sleep(250);
    const early = await expectOk(b, "sync_request", { sessionId: id });
    assert.ok(early.sync.serverTime < p.startsAt, "test too slow: the sync ran after startsAt");
    assert.equal(early.sync.positionMs, 3000, "position moved before startsAt");
    assert.equal(early.sync.isPlaying, true);
    const earlySnap = await getState(srv, id);
    assert.equal(earlySnap.position, 3000);

    while (Date.now() < p.startsAt + 400) await sleep(50);
    const late = await expectOk(b, "sync_request", { sessionId: id });
    near(late.sync.positionMs, 3000 + (late.sync.serverTime - p.startsAt), 0.01, "position after startsAt");
    for (const t of ticks) {
      const want = t.serverTimestamp <= p.startsAt ? 3000 : 3000 + (t.serverTimestamp - p.startsAt);
      near(t.positionMs, want, 0.01, `tick at ${t.serverTimestamp} (startsAt ${p.startsAt})`);
    }
    assert.ok(ticks.some((t) => t.serverTimestamp > p.startsAt), "no scroll_tick after startsAt");
    await expectOk(a, "pause", { sessionId: id });
  });

  test("seek, pause and stop values; tempo and message; play/pause while already so change nothing", T, async () => {
    const id = sessionName("values");
    const [a, b] = await band(srv.url, id, ["A", "B"]);
    const seek = await expectOk(a, "seek", { sessionId: id, position: 12345 });
    assert.equal(seek.state.position, 12345);
    assert.equal(seek.state.isPlaying, false);
    // positionMs is accepted as the field name too.
    assert.equal((await expectOk(a, "seek", { sessionId: id, positionMs: 12000 })).state.positionMs, 12000);
    await expectOk(a, "seek", { sessionId: id, position: 12345.5 });

    const pl = once(b, "play", 2000);
    await expectOk(a, "play", { sessionId: id });
    const p = await pl;
    await sleep(300);
    const pz = once(b, "pause", 2000);
    const paused = await expectOk(a, "pause", { sessionId: id });
    const pe = await pz;
    near(pe.position, 12345.5 + (pe.serverTimestamp - p.startsAt), 0.01, "pause position");
    assert.ok(pe.position > 12345.5 + 200, `pause position ${pe.position}: playback did not advance`);
    assert.equal(paused.state.isPlaying, false);
    assert.equal(paused.state.startsAt, null);
    near(paused.state.position, pe.position, 0.01, "ack position vs pause event");
    await sleep(200);
    const held = await expectOk(b, "sync_request", { sessionId: id });
    near(held.sync.positionMs, pe.position, 0.01, "position while paused");

    // No-ops: pause while paused, play while playing, the same tempo/message.
    const v = (await getState(srv, id)).version;
    await settle(b);
    const bLog = recorder(b);
    assert.equal((await expectOk(a, "pause", { sessionId: id })).state.version, v);
    assert.equal((await getState(srv, id)).version, v, "pause while paused changed the version");
    const r1 = await expectOk(a, "play", { sessionId: id, delayMs: 1000 });
    assert.equal(r1.state.version, v + 1);
    const r2 = await expectOk(a, "play", { sessionId: id });
    assert.equal(r2.state.version, v + 1, "play while playing changed the version");
    assert.equal(r2.state.startsAt, r1.state.startsAt, "a second play moved the scheduled start");
    await sleep(100);
    assert.equal(bLog.log.filter((e) => e.event === "play").length, 1, `play while playing was broadcast again: ${bLog.summary()}`);

    const st = once(b, "stop", 2000);
    const stopped = await expectOk(a, "stop", { sessionId: id });
    await st;
    assert.deepEqual([stopped.state.isPlaying, stopped.state.position, stopped.state.startsAt], [false, 0, null]);
    assert.equal(stopped.state.beat, 0);
    const again = await expectOk(a, "stop", { sessionId: id });
    assert.equal(again.state.version, stopped.state.version, "stop at 0 while stopped changed the version");

    const t1 = await expectOk(a, "set_tempo", { sessionId: id, tempo: 20 });
    assert.equal(t1.state.tempoBpm, 20);
    assert.equal((await expectOk(a, "set_tempo", { sessionId: id, tempoBpm: 300 })).state.tempo, 300);
    assert.equal((await expectOk(a, "set_tempo", { sessionId: id, tempo: 87.5 })).state.tempo, 87.5);
    const same = await expectOk(a, "set_tempo", { sessionId: id, tempo: 87.5 });
    assert.equal((await getState(srv, id)).version, same.state.version);

    // update_message: any member; control characters stripped; 500 chars allowed.
    const m = await expectOk(b, "update_message", { sessionId: id, message: "Verse\u0007 2\u0000!" });
    assert.equal(m.state.message, "Verse 2!");
    const long = "é".repeat(500);
    assert.equal((await expectOk(a, "update_message", { sessionId: id, message: long })).state.message, long);
    // 501 characters of which one is a control character: 500 after stripping.
    assert.equal((await expectOk(a, "update_message", { sessionId: id, message: `${"x".repeat(250)}\n${"x".repeat(250)}` })).state.message, "x".repeat(500));
    assert.equal((await expectOk(a, "update_message", { sessionId: id, message: "" })).state.message, "");
    const vm = (await getState(srv, id)).version;
    await expectOk(a, "update_message", { sessionId: id, message: "" });
    assert.equal((await getState(srv, id)).version, vm, "the same message again changed the version");
  });

  test("version increases by exactly one per change, in every member's snapshots and acks", T, async () => {
    const id = sessionName("version");
    const [a, b] = await band(srv.url, id, ["A", "B"]);
    const snaps = collect(b, "snapshot");
    const start = (await getState(srv, id)).version;
    const steps = [
      [a, "set_tempo", { sessionId: id, tempo: 100 }],
      [a, "seek", { sessionId: id, position: 1000 }],
      [a, "play", { sessionId: id }],
      [a, "set_tempo", { sessionId: id, tempo: 140 }],
      [a, "seek", { sessionId: id, position: 5000 }],
      [b, "update_message", { sessionId: id, message: "bridge" }],
      [a, "pause", { sessionId: id }],
      [a, "play", { sessionId: id, delayMs: 50 }],
      [a, "stop", { sessionId: id }],
      [a, "set_role", { sessionId: id, role: "follower" }],
      [b, "set_role", { sessionId: id, role: "leader" }],
      [b, "seek", { sessionId: id, position: 42 }],
    ];
    let expected = start;
    for (const [s, ev, p] of steps) {
      const ack = await expectOk(s, ev, p);
      expected++;
      assert.equal(ack.state.version, expected, `${ev} ${show(p)}: ack version ${ack.state.version}, want ${expected}`);
    }
    await waitUntil(() => snaps.some((s) => s.version === expected), 2000, `B's snapshot version ${expected}`);
    await sleep(100);
    assert.deepEqual(
      snaps.map((s) => s.version),
      Array.from({ length: steps.length }, (_, i) => start + 1 + i),
      "B's snapshots must carry consecutive versions, one per change",
    );
    for (const s of snaps) assertSnapshot(s);
    // A third member joining and leaving: one change each.
    const c = await connect(srv.url);
    assert.equal((await joinAck(c, id, "C")).version, expected + 1);
    await expectOk(c, "leave_session", { sessionId: id });
    assert.equal((await getState(srv, id)).version, expected + 2);
  });

  test("idempotent join: a second join only re-sends the snapshot and room_stats; no user_joined, no version change", T, async () => {
    const id = sessionName("rejoin");
    const [a, b] = await band(srv.url, id, ["A", "B"]);
    const before = essence(await getState(srv, id));
    await settle(a, b);
    const aLog = recorder(a);
    const bLog = recorder(b);
    const again = await joinAck(b, id); // as the mobile app: only sessionId
    assert.equal(again.version, before.version);
    assert.equal(again.memberCount, 2);
    assert.equal(again.members.find((m) => m.socketId === b.id)?.displayName, "B", "a re-join without displayName renamed the member");
    await joinAck(b, id, "B");
    await joinAck(a, id); // the leader re-joining keeps leadership
    await sleep(200);
    // Each re-join is answered with snapshot and room_stats (the mobile app
    // re-joins on every reconnect and reads its count from room_stats).
    assert.deepEqual(aLog.log.map((e) => e.event), ["snapshot", "room_stats"], `A got ${aLog.summary()}`);
    assert.deepEqual(bLog.log.map((e) => e.event), ["snapshot", "room_stats", "snapshot", "room_stats"], `B got ${bLog.summary()}`);
    assertSnapshot(bLog.log[0].arg);
    assert.deepEqual(essence(await getState(srv, id)), before);
  });

  test("invalid payloads for every client event: right code, nothing changes (ack and error-event forms)", { timeout: 60_000 }, async () => {
    const id = sessionName("invalid");
    const [a, b] = await band(srv.url, id, ["Leader", "Follower"]);
    await expectOk(a, "set_tempo", { sessionId: id, tempo: 133 });
    await expectOk(a, "seek", { sessionId: id, position: 4242 });
    await expectOk(a, "update_message", { sessionId: id, message: "keep me" });
    const before = essence(await getState(srv, id));
    const outsider = await connect(srv.url); // for join_session: a success would add a member
    await settle(a, b);
    const logs = [a, b].map(recorder);

    const big = "x".repeat(20 * 1024);
    const badIds = [
      [42, "INVALID_PAYLOAD"], [null, "INVALID_PAYLOAD"], [{}, "INVALID_PAYLOAD"], [[id], "INVALID_PAYLOAD"], [true, "INVALID_PAYLOAD"],
      ["", "INVALID_SESSION_ID"], ["has space", "INVALID_SESSION_ID"], ["semi;colon", "INVALID_SESSION_ID"],
      ["x".repeat(65), "INVALID_SESSION_ID"], ["ünïcode", "INVALID_SESSION_ID"],
    ];
    const notObjects = [[NONE, "INVALID_PAYLOAD"], [null, "INVALID_PAYLOAD"], [[], "INVALID_PAYLOAD"], ["text", "INVALID_PAYLOAD"], [7, "INVALID_PAYLOAD"], [false, "INVALID_PAYLOAD"]];
    // Event -> a valid payload (for the leader, or the outsider for join) and the bad variants.
    const valid = {
      join_session: { sessionId: id, displayName: "New" },
      leave_session: { sessionId: id },
      set_role: { sessionId: id, role: "follower" },
      set_tempo: { sessionId: id, tempo: 90 },
      play: { sessionId: id, delayMs: 10 },
      pause: { sessionId: id },
      seek: { sessionId: id, position: 1 },
      stop: { sessionId: id },
      sync_request: { sessionId: id },
      update_message: { sessionId: id, message: "changed" },
    };
    const specific = {
      join_session: [
        [{ sessionId: id, displayName: 5 }, "INVALID_PAYLOAD"], [{ sessionId: id, displayName: "n".repeat(51) }, "INVALID_PAYLOAD"],
        [{ sessionId: id, displayName: ["x"] }, "INVALID_PAYLOAD"], [{ sessionId: id, role: "admin" }, "INVALID_PAYLOAD"],
        [{ sessionId: id, role: 1 }, "INVALID_PAYLOAD"], [{ sessionId: id, role: "LEADER" }, "INVALID_PAYLOAD"],
        [{ displayName: "no id" }, "INVALID_PAYLOAD"],
      ],
      set_role: [
        [{ sessionId: id }, "INVALID_PAYLOAD"], [{ sessionId: id, role: "admin" }, "INVALID_PAYLOAD"], [{ sessionId: id, role: 1 }, "INVALID_PAYLOAD"],
        [{ sessionId: id, role: null }, "INVALID_PAYLOAD"], [{ sessionId: id, role: "" }, "INVALID_PAYLOAD"], [{ sessionId: id, role: "Follower" }, "INVALID_PAYLOAD"],
        [{ role: "follower" }, "INVALID_PAYLOAD"],
      ],
      set_tempo: [
        [{ sessionId: id }, "INVALID_PAYLOAD"], [{ sessionId: id, tempo: 0 }, "INVALID_PAYLOAD"], [{ sessionId: id, tempo: 400 }, "INVALID_PAYLOAD"],
        [{ sessionId: id, tempo: 0.99 }, "INVALID_PAYLOAD"], [{ sessionId: id, tempo: 300.01 }, "INVALID_PAYLOAD"], [{ sessionId: id, tempo: -120 }, "INVALID_PAYLOAD"],
        [{ sessionId: id, tempo: 0 }, "INVALID_PAYLOAD"], [{ sessionId: id, tempo: "120" }, "INVALID_PAYLOAD"], [{ sessionId: id, tempo: null }, "INVALID_PAYLOAD"],
        [{ sessionId: id, tempo: [120] }, "INVALID_PAYLOAD"], [{ sessionId: id, tempo: { bpm: 120 } }, "INVALID_PAYLOAD"], [{ sessionId: id, tempo: true }, "INVALID_PAYLOAD"],
        [{ sessionId: id, tempo: 1e308 }, "INVALID_PAYLOAD"], [{ sessionId: id, tempoBpm: 400 }, "INVALID_PAYLOAD"], [{ tempo: 120 }, "INVALID_PAYLOAD"],
      ],
      play: [
        [{ sessionId: id, delayMs: 6000 }, "INVALID_PAYLOAD"], [{ sessionId: id, delayMs: 5000.5 }, "INVALID_PAYLOAD"], [{ sessionId: id, delayMs: -1 }, "INVALID_PAYLOAD"],
        [{ sessionId: id, delayMs: "100" }, "INVALID_PAYLOAD"], [{ sessionId: id, delayMs: [100] }, "INVALID_PAYLOAD"], [{ sessionId: id, delayMs: 1e300 }, "INVALID_PAYLOAD"],
        [{ delayMs: 0 }, "INVALID_PAYLOAD"],
      ],
      seek: [
        [{ sessionId: id }, "INVALID_PAYLOAD"], [{ sessionId: id, position: -1 }, "INVALID_PAYLOAD"], [{ sessionId: id, position: 1e9 }, "INVALID_PAYLOAD"],
        [{ sessionId: id, position: 86_400_001 }, "INVALID_PAYLOAD"], [{ sessionId: id, position: "100" }, "INVALID_PAYLOAD"], [{ sessionId: id, position: null }, "INVALID_PAYLOAD"],
        [{ sessionId: id, position: { ms: 1 } }, "INVALID_PAYLOAD"], [{ sessionId: id, positionMs: -1 }, "INVALID_PAYLOAD"], [{ sessionId: id, position: -1e-9 }, "INVALID_PAYLOAD"],
        [{ position: 100 }, "INVALID_PAYLOAD"],
      ],
      update_message: [
        [{ sessionId: id }, "INVALID_PAYLOAD"], [{ sessionId: id, message: "m".repeat(501) }, "INVALID_PAYLOAD"], [{ sessionId: id, message: "é".repeat(501) }, "INVALID_PAYLOAD"],
        [{ sessionId: id, message: 123 }, "INVALID_PAYLOAD"], [{ sessionId: id, message: null }, "INVALID_PAYLOAD"], [{ sessionId: id, message: ["a"] }, "INVALID_PAYLOAD"],
        [{ sessionId: id, message: { text: "a" } }, "INVALID_PAYLOAD"], [{ sessionId: id, message: big }, "PAYLOAD_TOO_LARGE"], [{ message: "hi" }, "INVALID_PAYLOAD"],
      ],
      leave_session: [], pause: [], stop: [], sync_request: [],
    };
    const cases = [];
    for (const [event, ok] of Object.entries(valid)) {
      for (const [p, code] of notObjects) cases.push([event, p, code]);
      cases.push([event, [ok], "INVALID_PAYLOAD"]); // a valid payload wrapped in an array
      cases.push([event, {}, "INVALID_PAYLOAD"]); // sessionId missing
      for (const [sid, code] of badIds) cases.push([event, { ...ok, sessionId: sid }, code]);
      cases.push([event, { ...ok, padding: big }, "PAYLOAD_TOO_LARGE"]);
      for (const [p, code] of specific[event]) cases.push([event, p, code]);
    }
    // Events that need no session.
    cases.push(
      ...[[null, "INVALID_PAYLOAD"], [[], "INVALID_PAYLOAD"], ["text", "INVALID_PAYLOAD"], [7, "INVALID_PAYLOAD"], [[{ timestamp: 1 }], "INVALID_PAYLOAD"],
        [{ timestamp: "now" }, "INVALID_PAYLOAD"], [{ timestamp: {} }, "INVALID_PAYLOAD"], [{ timestamp: 1, padding: big }, "PAYLOAD_TOO_LARGE"]]
        .map(([p, c]) => ["heartbeat", p, c]),
      ...[...notObjects, [{}, "INVALID_PAYLOAD"], [{ timestamp: "now" }, "INVALID_PAYLOAD"], [{ timestamp: null }, "INVALID_PAYLOAD"],
        [{ sessionId: id }, "INVALID_PAYLOAD"], [[{ timestamp: 1 }], "INVALID_PAYLOAD"], [{ timestamp: 1, padding: big }, "PAYLOAD_TOO_LARGE"]]
        .map(([p, c]) => ["latency_probe", p, c]),
      ...[[null, "INVALID_PAYLOAD"], [[], "INVALID_PAYLOAD"], [7, "INVALID_PAYLOAD"], [{ timestamp: "x" }, "INVALID_PAYLOAD"],
        [{ clientTimestamp: [] }, "INVALID_PAYLOAD"], [{ timestamp: 1, padding: big }, "PAYLOAD_TOO_LARGE"]]
        .map(([p, c]) => ["heartbeat_response", p, c]),
      ...[...notObjects, [{}, "INVALID_PAYLOAD"], [{ t0: "x" }, "INVALID_PAYLOAD"], [{ t0: null }, "INVALID_PAYLOAD"], [[{ t0: 1 }], "INVALID_PAYLOAD"],
        [{ t0: 1, padding: big }, "PAYLOAD_TOO_LARGE"]]
        .map(([p, c]) => ["clock_sync", p, c]),
      ...[...notObjects, [{}, "INVALID_PAYLOAD"], [{ offsetMs: 1 }, "INVALID_PAYLOAD"], [{ offsetMs: "1", rttMs: 2 }, "INVALID_PAYLOAD"],
        [{ offsetMs: 1, rttMs: -2 }, "INVALID_PAYLOAD"], [{ offsetMs: null, rttMs: 2 }, "INVALID_PAYLOAD"],
        [{ offsetMs: 1, rttMs: 2, padding: big }, "PAYLOAD_TOO_LARGE"]]
        .map(([p, c]) => ["sync_quality", p, c]),
    );
    // Every client event is here, or in songs.test.mjs's refusal table.
    assert.deepEqual(missingFrom(CLIENT_EVENTS, [...cases.map(([event]) => event), ...SONGS_TEST_CLIENT_EVENTS]), [],
      "client events with no invalid-payload cases: add them to this test");

    const failures = [];
    const sender = (event) => (event === "join_session" ? outsider : a);
    for (const [event, payload, code] of cases) {
      try {
        await expectCode(sender(event), event, payload, code);
      } catch (err) {
        failures.push(`ack: ${err.message}`);
      }
      try {
        await expectErrorEvent(sender(event), event, payload, code);
      } catch (err) {
        failures.push(`no-ack: ${err.message}`);
      }
    }
    await sleep(200);
    assert.deepEqual(failures, [], `${failures.length} of ${cases.length * 2} invalid-payload checks failed:\n${failures.join("\n")}`);
    assert.deepEqual(essence(await getState(srv, id)), before, "an invalid payload changed the session");
    for (const [i, l] of logs.entries()) assert.equal(l.log.length, 0, `member ${i} received broadcasts: ${l.summary()}`);
    assert.equal(outsider.connected, true, "the sender of invalid payloads was disconnected");
    for (const bad of ["", "has space", "x".repeat(65)]) {
      const res = await httpGet(`${srv.url}/sessions/${encodeURIComponent(bad)}`);
      assert.notEqual(res.status, 200, `an invalid join created session ${show(bad)}`);
    }

    // The valid payloads work (the refusals were about the payloads, not the senders).
    await expectOk(a, "set_tempo", valid.set_tempo);
    await expectOk(a, "seek", valid.seek);
    await expectOk(a, "play", valid.play);
    await expectOk(a, "pause", valid.pause);
    await expectOk(a, "update_message", valid.update_message);
    await expectOk(b, "sync_request", valid.sync_request);
    await expectOk(outsider, "join_session", valid.join_session);
    assert.equal((await getState(srv, id)).memberCount, 3);
  });

  test("unknown events get UNKNOWN_EVENT and change nothing", T, async () => {
    const id = sessionName("unknown");
    const [a, b] = await band(srv.url, id, ["A", "B"]);
    const before = essence(await getState(srv, id));
    await settle(b);
    const logB = recorder(b);
    // Server-to-client event names, near-misses and prototype keys are unknown as client events.
    for (const ev of ["bogus", "snapshot", "scroll_tick", "room_stats", "Play", "join", "__proto__", "constructor", "toString", "x".repeat(64)]) {
      await expectCode(a, ev, { sessionId: id }, "UNKNOWN_EVENT");
      await expectCode(a, ev, NONE, "UNKNOWN_EVENT");
      await expectErrorEvent(a, ev, { sessionId: id, tempo: 200 }, "UNKNOWN_EVENT");
    }
    await sleep(100);
    assert.deepEqual(essence(await getState(srv, id)), before);
    assert.equal(logB.log.length, 0, `B received ${logB.summary()}`);
    assert.equal(a.connected, true);
    await expectOk(a, "heartbeat", { timestamp: 1 });
  });

  test("unknown event names of any shape (over 64 chars, spaces, non-ASCII, empty) are answered with UNKNOWN_EVENT", T, async () => {
    const id = sessionName("oddnames");
    const [a] = await band(srv.url, id, ["A"]);
    const before = essence(await getState(srv, id));
    const failures = [];
    for (const ev of ["x".repeat(65), "x".repeat(300), "two words", "événement", "semi;colon", ""]) {
      // docs/protocol.md, "Client events": an ack, when asked for, is answered; an unknown
      // event name gets UNKNOWN_EVENT. A client that waits on the ack must
      // not hang because the name is odd.
      try {
        await expectCode(a, ev, { sessionId: id }, "UNKNOWN_EVENT", 1000);
      } catch (err) {
        failures.push(`ack: ${err.message.split("\n")[0]}`);
      }
      try {
        // The name is echoed shortened and cleaned (the server never echoes
        // a huge input), or null when there is none.
        const echoed = (name) => name === null || (typeof name === "string" && name.length > 0 && name.length <= 80);
        await expectErrorEvent(a, ev, { sessionId: id }, "UNKNOWN_EVENT", 3000, echoed);
      } catch (err) {
        failures.push(`no-ack: ${err.message.split("\n")[0]}`);
      }
    }
    assert.deepEqual(essence(await getState(srv, id)), before);
    assert.equal(a.connected, true);
    assert.deepEqual(failures, [], `odd event names:\n${failures.join("\n")}`);
  });

  test("HTTP /sessions/:id: 200 with the session state, 404 unknown, 400 invalid id", T, async () => {
    const id = sessionName("http");
    const [a] = await band(srv.url, id, ["A"]);
    await expectOk(a, "set_tempo", { sessionId: id, tempo: 150 });
    const res = await httpGet(`${srv.url}/sessions/${id}`);
    assert.equal(res.status, 200);
    assert.match(res.headers["content-type"], /^application\/json/);
    const st = res.json();
    assertSnapshot(st, "GET /sessions/:id");
    assert.deepEqual([st.sessionId, st.tempo, st.leaderSocketId, st.memberCount], [id, 150, a.id, 1]);
    const missing = await httpGet(`${srv.url}/sessions/${sessionName("nope")}`);
    assert.equal(missing.status, 404);
    assert.equal(typeof missing.json().error?.code, "string");
    for (const bad of ["bad!id", "has%20space", "x".repeat(65), "%C3%BC"]) {
      const r = await httpGet(`${srv.url}/sessions/${bad}`);
      assert.equal(r.status, 400, `GET /sessions/${bad}: ${r.status} ${r.body.slice(0, 200)}`);
      assert.equal(r.json().error?.code, "INVALID_SESSION_ID");
    }
    // CORS_ORIGIN=* (default): any origin may read.
    const cors = await httpGet(`${srv.url}/sessions/${id}`, { headers: { Origin: "http://anywhere.example" } });
    assert.equal(cors.headers["access-control-allow-origin"], "*");
  });

  test("server: no data race, no panic", T, async () => {
    closeAllClients();
    const { code, logs } = await srv.stop();
    assertCleanLogs(logs, "contract server");
    assert.equal(code, 0);
  });
});

// =========================================================================
describe("contract: LEADER_POLICY=open", () => {
  let srv;
  before(async () => {
    srv = await startServer({ name: "contract-open", env: { LEADER_POLICY: "open", RATE_LIMIT_MAX_REQUESTS: "100000" } });
  });
  after(async () => {
    closeAllClients();
    await srv?.stop(); // no-op when the last test already stopped it
  });

  test("anyone may take leadership; the old leader loses transport control", T, async () => {
    const id = sessionName("open");
    const [a, b, c] = await band(srv.url, id, ["A", "B", "C"]);
    await expectOk(a, "set_role", { sessionId: id, role: "leader" }); // claimed, so taking it is a takeover
    await expectOk(a, "play", { sessionId: id });
    const rcC = once(c, "role_changed", 2000);
    const taken = await expectOk(b, "set_role", { sessionId: id, role: "leader" });
    assert.equal(taken.state.leaderSocketId, b.id);
    assert.equal(taken.state.isPlaying, true, "a takeover must not stop playback");
    const rc = await rcC;
    assertKeys(rc, KEYS.role_changed, "role_changed");
    assert.deepEqual([rc.socketId, rc.role, rc.previousLeader, rc.reason], [b.id, "leader", a.id, "takeover"]);
    assert.deepEqual(taken.state.members.map((m) => m.role), ["follower", "leader", "follower"]);
    await expectCode(a, "pause", { sessionId: id }, "NOT_LEADER");
    await expectOk(b, "pause", { sessionId: id });
    // A joiner asking to lead takes over too.
    const d = await connect(srv.url);
    const rcA = once(a, "role_changed", 2000);
    const snapD = await joinAck(d, id, "D", { role: "leader" });
    assert.equal(snapD.leaderSocketId, d.id);
    assert.deepEqual([(await rcA).previousLeader, (await rcA).reason], [b.id, "takeover"]);
    await expectCode(b, "seek", { sessionId: id, position: 1 }, "NOT_LEADER");
  });

  test("server: no data race, no panic", T, async () => {
    closeAllClients();
    const { logs } = await srv.stop();
    assertCleanLogs(logs, "open-policy server");
  });
});

// =========================================================================
// Rate limiting. The server's limiter is a token bucket per socket:
// RATE_LIMIT_MAX_REQUESTS tokens, refilled at MAX per RATE_LIMIT_WINDOW_MS.
describe("contract: per-socket rate limit", () => {
  const LIMIT = 20;
  const WINDOW = 1000;
  let srv;
  before(async () => {
    srv = await startServer({
      name: "contract-ratelimit",
      env: {
        RATE_LIMIT_MAX_REQUESTS: String(LIMIT),
        RATE_LIMIT_WINDOW_MS: String(WINDOW),
        RATE_LIMIT_MAX_VIOLATIONS: "3",
        HEARTBEAT_INTERVAL: "1200", // the default 30 s, scaled like the app's cadence below
      },
    });
  });
  after(async () => {
    closeAllClients();
    await srv?.stop(); // no-op when the last test already stopped it
  });

  test("a flood of 300 events: one rate_limit_exceeded per window, RATE_LIMITED acks; disconnected after 3 violation windows", T, async () => {
    const id = sessionName("flood");
    const [lead, c] = await band(srv.url, id, ["Lead", "Flooder"], { reconnection: false });
    const flooderId = c.id;
    await sleep(WINDOW); // both joins' tokens come back
    const notices = collect(c, "rate_limit_exceeded");
    const responses = collect(c, "heartbeat_response");

    const drops = [];
    c.on("disconnect", (reason) => drops.push(reason));
    const flood = async (n, label) => {
      const t0 = Date.now();
      try {
        const acks = await Promise.all(Array.from({ length: n }, (_, i) => send(c, "heartbeat", { timestamp: i }, 5000)));
        return { acks, elapsed: Date.now() - t0 };
      } catch (err) {
        throw new Error(
          `${label}: the flooding socket was disconnected (${drops.join(", ") || err.message}) after ${notices.length} ` +
            `rate_limit_exceeded; it must stay connected until RATE_LIMIT_MAX_VIOLATIONS (3) violation windows. ` +
            `Server log:\n${srv.tail(8)}`,
        );
      }
    };

    // Window 1.
    const w1 = await flood(300, "window 1, 300 events with acks");
    const ok1 = w1.acks.filter((a) => a.ok === true).length;
    const limited = w1.acks.filter((a) => a.ok === false);
    assert.ok(limited.length > 0, "300 events at once were all accepted");
    for (const a of limited) {
      assert.equal(a.error?.code, "RATE_LIMITED", `refused ack ${show(a)}`);
    }
    const refill = Math.ceil((w1.elapsed * LIMIT) / WINDOW) + 1;
    assert.ok(ok1 >= LIMIT && ok1 <= LIMIT + refill, `${ok1} of 300 accepted; the bucket holds ${LIMIT} (+${refill} refilled in ${w1.elapsed} ms)`);
    await sleep(100);
    assert.equal(responses.length, ok1, "refused heartbeats must not be answered");
    assert.equal(notices.length, 1, `got ${notices.length} rate_limit_exceeded in one window: ${show(notices)}`);
    assertKeys(notices[0], KEYS.rate_limit_exceeded, "rate_limit_exceeded");
    assert.equal(notices[0].event, "heartbeat");
    assert.equal(notices[0].limit, LIMIT);
    assert.equal(notices[0].windowMs, WINDOW);
    assert.equal(notices[0].violations, 1);
    assert.ok(notices[0].retryAfterMs > 0 && notices[0].retryAfterMs <= WINDOW, `retryAfterMs ${notices[0].retryAfterMs}`);

    // Still inside window 1: more refusals, no second notice.
    const more = await flood(30, "window 1, 30 more");
    assert.ok(more.acks.some((a) => a.error?.code === "RATE_LIMITED"));
    assert.equal(notices.length, 1, "a second rate_limit_exceeded within the same window");
    // Refused events did nothing; the session is intact and the socket is still in it.
    assert.equal(c.connected, true);

    // After the window, the socket is served again; a new flood is violation 2.
    await sleep(WINDOW + 100);
    assert.equal((await send(c, "heartbeat", { timestamp: 1 })).ok, true, "not served again after the window");
    await flood(100, "window 2");
    await waitUntil(() => notices.length === 2, 2000, "the second window's notice");
    assert.equal(notices[1].violations, 2);
    assert.equal(c.connected, true, "disconnected before RATE_LIMIT_MAX_VIOLATIONS");

    // Violation 3 = RATE_LIMIT_MAX_VIOLATIONS: the server disconnects the socket.
    await sleep(WINDOW + 100);
    const gone = once(c, "disconnect", 3000);
    for (let i = 0; i < 100; i++) c.emit("heartbeat", { timestamp: i });
    const reason = await gone;
    assert.equal(notices.length, 3);
    assert.equal(notices[2].violations, 3);
    const problems = [];
    // "io server disconnect" is what keeps socket.io-client from
    // reconnecting on its own; "transport close" would bring it right back.
    if (reason !== "io server disconnect") problems.push(`the kicked client saw disconnect reason "${reason}", want "io server disconnect"`);
    // A deliberate server disconnect ends the socket's session: it is not
    // kept for connection-state recovery, and the member is gone.
    await sleep(300);
    const after = await getState(srv, id);
    if (after.memberCount !== 1) {
      problems.push(`300 ms after kicking it, the flooder is still a member: ${show(after.members.map((m) => [m.socketId, m.connected]))}`);
    }
    const back = once(c, "connect", 3000);
    c.connect(); // the app reconnecting by hand after being kicked
    await back;
    if (c.recovered) problems.push(`the kicked socket reconnected with socket.recovered === true (id ${c.id}, was ${flooderId})`);
    c.disconnect();
    assert.deepEqual(problems, [], problems.join("\n"));
    // Everyone else is unaffected.
    assert.equal((await send(lead, "heartbeat", { timestamp: 2 })).ok, true);
    const fresh = await connect(srv.url);
    assert.equal((await send(fresh, "heartbeat", { timestamp: 3 })).ok, true);
    fresh.close();
  });

  test("every event counts: a flood of latency probes and unknown events is limited too", T, async () => {
    const c = await connect(srv.url);
    const notices = collect(c, "rate_limit_exceeded");
    const acks = await Promise.all(Array.from({ length: 60 }, (_, i) => send(c, i % 2 ? "latency_probe" : "no_such_event", { timestamp: i }, 5000)));
    assert.ok(acks.some((a) => a.error?.code === "RATE_LIMITED"), "probes/unknown events are not counted");
    await waitUntil(() => notices.length === 1, 2000, "rate_limit_exceeded");
    assert.ok(["latency_probe", "no_such_event"].includes(notices[0].event));
    c.close();
  });

  // The mobile app sends a latency_probe every 2.5 s and a heartbeat every
  // 5 s, and answers the server heartbeat (every 30 s by default): about
  // 0.63 events/s against a default budget of 100 per 1000 ms, a headroom of
  // ~160x. Running that for real would take minutes per trip through the
  // window, so this test compresses the app's clock 25x (probe every 100 ms,
  // heartbeat every 200 ms, server heartbeat every 1200 ms: ~15.8 events/s)
  // and shrinks the budget to 20 per 1000 ms at the same time: a headroom of
  // only ~1.27x. The limiter is a token bucket whose verdict depends only on
  // the event rate against the refill rate and on the burst size (equal to
  // the budget), so if this much tighter configuration never refuses the
  // app's traffic, the default one cannot. The control run at 2x the probe
  // rate (~30 events/s) must trip, which shows this test can fail.
  async function appCadence(probeEveryMs, heartbeatEveryMs, runMs) {
    const id = sessionName("cadence");
    const c = await connect(srv.url);
    const notices = collect(c, "rate_limit_exceeded");
    const errors = collect(c, "error");
    const latency = collect(c, "latency_response");
    const hbResp = collect(c, "heartbeat_response");
    c.on("heartbeat", (h) => c.emit("heartbeat_response", { timestamp: h.timestamp, clientTimestamp: Date.now() }));
    c.emit("join_session", { sessionId: id });
    let probes = 0;
    let beats = 0;
    const p = setInterval(() => {
      probes++;
      c.emit("latency_probe", { timestamp: Date.now(), sessionId: id });
    }, probeEveryMs);
    const h = setInterval(() => {
      beats++;
      c.emit("heartbeat", { timestamp: Date.now() });
    }, heartbeatEveryMs);
    await sleep(runMs);
    clearInterval(p);
    clearInterval(h);
    await sleep(150);
    const res = { notices, errors, probes, beats, latency: latency.length, hb: hbResp.length, connected: c.connected };
    c.close();
    return res;
  }

  test("the mobile app's cadence (scaled 25x against a 5x smaller budget) never trips the limit", T, async () => {
    const r = await appCadence(100, 200, 4000);
    assert.equal(r.notices.length, 0, `the app's cadence was rate limited: ${show(r.notices)}`);
    assert.deepEqual(r.errors, [], `errors: ${show(r.errors)}`);
    assert.equal(r.latency, r.probes, `${r.probes} probes, ${r.latency} latency_response`);
    assert.equal(r.hb, r.beats, `${r.beats} heartbeats, ${r.hb} heartbeat_response`);
    assert.ok(r.probes >= 30, `only ${r.probes} probes sent`);
    assert.equal(r.connected, true);
  });

  test("control: twice the app's probe rate against the same budget does trip it", T, async () => {
    const r = await appCadence(40, 200, 3000);
    assert.ok(r.notices.length >= 1, "~30 events/s against 20/s was never limited: the cadence test above proves nothing");
    assert.ok(r.latency < r.probes, "every probe was answered despite the limit");
  });

  test("server: no data race, no panic", T, async () => {
    closeAllClients();
    const { logs } = await srv.stop();
    assertCleanLogs(logs, "rate-limit server");
  });
});

// =========================================================================
describe("contract: HTTP endpoints, security headers, CORS (CORS_ORIGIN=http://allowed.example)", () => {
  const ALLOWED = "http://allowed.example";
  let srv;
  before(async () => {
    srv = await startServer({ name: "contract-http", env: { CORS_ORIGIN: ALLOWED, METRICS_INTERVAL: "200" } });
  });
  after(async () => {
    closeAllClients();
    await srv?.stop(); // no-op when the last test already stopped it
  });

  test("GET /health: fields and live counts", T, async () => {
    const id = sessionName("health");
    const [a, b] = await band(srv.url, id, ["A", "B"]);
    const res = await httpGet(`${srv.url}/health`);
    assert.equal(res.status, 200);
    assert.match(res.headers["content-type"], /^application\/json/);
    const h = res.json();
    a.close();
    b.close();
    await waitUntil(async () => (await httpGet(`${srv.url}/health`)).json().connections === 0, 3000, "connections back to 0");
    assertKeys(h, ["status", "uptime", "connections", "sessions", "redis", "instanceId", "version"], "/health");
    assert.equal(typeof h.uptime, "number");
    assert.ok(h.uptime >= 0);
    assert.equal(h.connections, 2);
    assert.equal(h.sessions, 1);
    assertKeys(h.redis, ["connected", "mode"], "/health redis");
    assert.equal(h.redis.connected, false);
    assert.equal(typeof h.redis.mode, "string");
    assert.equal(typeof h.instanceId, "string");
    assert.ok(h.instanceId.length > 0);
    assert.equal(typeof h.version, "string");
    // No Redis configured: sessions live in this process by design, which is
    // healthy ("degraded" is for the fallback while a configured Redis is
    // unreachable; see the next test). .env.example and docs/redis.md.
    assert.equal(h.status, "healthy", `/health status ${h.status} with no Redis configured`);
    assert.equal(h.redis.mode, "memory");
  });

  test("GET /health: 'degraded' (still 200, still serving) while a configured Redis is unreachable", T, async () => {
    const deadPort = await freePort(); // nothing listens there
    const degraded = await startServer({ name: "contract-http-noredis", env: { REDIS_URL: `redis://127.0.0.1:${deadPort}` } });
    try {
      const h = await waitUntil(async () => {
        const r = await httpGet(`${degraded.url}/health`);
        return r.json().status === "degraded" ? r : null;
      }, 5000, "/health to report degraded");
      assert.equal(h.status, 200, "a degraded instance still answers 200 (it serves from memory)");
      const body = h.json();
      assert.equal(body.redis.connected, false);
      assert.equal(body.redis.mode, "redis");
      // ... and it serves: a band can join and play.
      const id = sessionName("noredis");
      const [a, b] = await band(degraded.url, id, ["A", "B"]);
      const pl = once(b, "play", 2000);
      await expectOk(a, "play", { sessionId: id });
      await pl;
      a.close();
      b.close();
    } finally {
      const { logs } = await degraded.stop();
      assertCleanLogs(logs, "server with an unreachable Redis");
    }
  });

  test("GET /metrics: JSON by default, Prometheus text for Accept: text/plain and ?format=prometheus", T, async () => {
    const c = await connect(srv.url);
    await send(c, "heartbeat", { timestamp: 1 });
    await send(c, "bogus_event", {});
    const res = await httpGet(`${srv.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers["content-type"], /^application\/json/);
    const m = res.json();
    for (const k of ["connections", "messages", "syncLatency", "eventProcessing", "memory", "cpu", "sessions", "rateLimit", "errors", "alerts"]) {
      assert.ok(k in m, `/metrics has no ${k}: ${Object.keys(m)}`);
    }
    assert.equal(typeof m.messages.perSecond, "number");
    for (const k of ["avgMs", "p50Ms", "p95Ms", "p99Ms", "maxMs"]) {
      assert.equal(typeof m.syncLatency[k], "number", `syncLatency.${k}`);
      assert.equal(typeof m.eventProcessing[k], "number", `eventProcessing.${k}`);
    }
    assert.equal(m.connections.active, 1);
    assert.ok(m.messages.in >= 2);
    assert.equal(typeof m.rateLimit.violations, "number");
    assert.ok(m.errors.byCode.UNKNOWN_EVENT >= 1, `errors: ${show(m.errors)}`);
    assert.ok(Array.isArray(m.alerts));
    for (const accept of ["application/json", "*/*", "text/html,application/xhtml+xml,*/*;q=0.8"]) {
      const j = await httpGet(`${srv.url}/metrics`, { headers: { Accept: accept } });
      assert.match(j.headers["content-type"], /^application\/json/, `Accept: ${accept}`);
    }
    for (const [label, url, headers] of [
      ["Accept: text/plain", `${srv.url}/metrics`, { Accept: "text/plain" }],
      ["Accept: OpenMetrics", `${srv.url}/metrics`, { Accept: "application/openmetrics-text; version=1.0.0" }],
      ["?format=prometheus", `${srv.url}/metrics?format=prometheus`, {}],
    ]) {
      const p = await httpGet(url, { headers });
      assert.equal(p.status, 200, label);
      assert.match(p.headers["content-type"], /^(text\/plain|application\/openmetrics-text)/, `${label}: ${p.headers["content-type"]}`);
      assert.match(p.body, /^# (HELP|TYPE) /m, `${label}: not an exposition: ${p.body.slice(0, 200)}`);
      assert.match(p.body, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eE]+|NaN|[+-]Inf/m);
    }
    c.close();
  });

  test("GET /metrics/history: the stored samples", T, async () => {
    await sleep(500); // METRICS_INTERVAL=200
    const res = await httpGet(`${srv.url}/metrics/history`);
    assert.equal(res.status, 200);
    const h = res.json();
    assert.ok(Array.isArray(h.samples), `history: ${res.body.slice(0, 200)}`);
    assert.ok(h.samples.length >= 1, "no samples after several METRICS_INTERVALs");
    const s = h.samples.at(-1);
    for (const k of ["timestamp", "connections", "messagesPerSecond", "syncLatency", "sessions"]) assert.ok(k in s, `sample has no ${k}`);
    const ts = h.samples.map((x) => x.timestamp);
    assert.deepEqual(ts, [...ts].sort((x, y) => x - y), "samples not in time order");
    const since = await httpGet(`${srv.url}/metrics/history?since=${Date.now() + 60_000}`);
    assert.deepEqual(since.json().samples ?? [], []);
    assert.equal((await httpGet(`${srv.url}/metrics/history?since=yesterday`)).status, 400);
  });

  test("Helmet's default security headers on every endpoint", T, async () => {
    const want = {
      "content-security-policy": /default-src 'self'/,
      "cross-origin-opener-policy": /^same-origin$/,
      "cross-origin-resource-policy": /^same-origin$/,
      "origin-agent-cluster": /^\?1$/,
      "referrer-policy": /^no-referrer$/,
      "strict-transport-security": /^max-age=15552000; includeSubDomains$/,
      "x-content-type-options": /^nosniff$/,
      "x-dns-prefetch-control": /^off$/,
      "x-download-options": /^noopen$/,
      "x-frame-options": /^SAMEORIGIN$/,
      "x-permitted-cross-domain-policies": /^none$/,
      "x-xss-protection": /^0$/,
    };
    for (const path of ["/health", "/metrics", "/metrics/history", "/sessions/nope", "/sessions/bad!", "/no/such/path"]) {
      const res = await httpGet(`${srv.url}${path}`);
      for (const [h, re] of Object.entries(want)) {
        assert.match(res.headers[h] ?? "(missing)", re, `${path}: ${h}`);
      }
      assert.equal(res.headers["x-powered-by"], undefined, `${path}: X-Powered-By leaks`);
    }
  });

  test("CORS: the allowed origin gets the headers and a preflight answer, a foreign one does not", T, async () => {
    const ok = await httpGet(`${srv.url}/health`, { headers: { Origin: ALLOWED } });
    assert.equal(ok.headers["access-control-allow-origin"], ALLOWED);
    assert.match(ok.headers.vary ?? "", /Origin/i);
    const foreign = await httpGet(`${srv.url}/health`, { headers: { Origin: "http://evil.example" } });
    assert.equal(foreign.status, 200, "a simple GET is still answered (the browser enforces CORS)");
    assert.equal(foreign.headers["access-control-allow-origin"], undefined, "a foreign origin got Access-Control-Allow-Origin");

    const pre = await httpGet(`${srv.url}/sessions/x`, {
      method: "OPTIONS",
      headers: { Origin: ALLOWED, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "content-type" },
    });
    assert.ok(pre.status === 204 || pre.status === 200, `preflight status ${pre.status}`);
    assert.equal(pre.headers["access-control-allow-origin"], ALLOWED);
    assert.match(pre.headers["access-control-allow-methods"] ?? "", /GET/);
    assert.match(pre.headers["access-control-allow-headers"] ?? "", /content-type/i);
    const preForeign = await httpGet(`${srv.url}/sessions/x`, {
      method: "OPTIONS",
      headers: { Origin: "http://evil.example", "Access-Control-Request-Method": "GET" },
    });
    assert.equal(preForeign.headers["access-control-allow-origin"], undefined, "a foreign preflight was allowed");
  });

  test("WebSocket upgrade: a foreign Origin is refused; the allowed origin and native apps (no Origin) connect", T, async () => {
    const upgrade = (headers) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(wsUrl(srv.url), { headers });
        ws.on("unexpected-response", (_req, res) => {
          resolve(res.statusCode);
          ws.terminate();
        });
        ws.on("upgrade", () => {
          resolve(101);
          ws.terminate();
        });
        ws.on("error", (e) => reject(e));
      });
    assert.equal(await upgrade({ Origin: "http://evil.example" }), 403);
    assert.equal(await upgrade({ Origin: "http://allowed.example.evil.example" }), 403);
    assert.equal(await upgrade({ Origin: ALLOWED }), 101);
    assert.equal(await upgrade({}), 101);

    await assert.rejects(connect(srv.url, { extraHeaders: { Origin: "http://evil.example" }, reconnection: false }, 3000), /connect_error|websocket error|no connect/i);
    const good = await connect(srv.url, { extraHeaders: { Origin: ALLOWED } });
    assert.equal((await send(good, "heartbeat", { timestamp: 1 })).ok, true);
    const native = await connect(srv.url);
    assert.equal((await send(native, "heartbeat", { timestamp: 1 })).ok, true);
  });

  test("server: no data race, no panic", T, async () => {
    closeAllClients();
    const { logs } = await srv.stop();
    assertCleanLogs(logs, "http server");
  });
});
