// Transport end-to-end tests: the real server binary, driven by the official
// socket.io-client (the judge of wire compatibility, docs/protocol.md "Transport")
// and by a raw Engine.IO client for input no real client would send.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, httpGet, goroutines, metrics, assertCleanLogs } from "./lib/server.mjs";
import {
  connect,
  once,
  emitAck,
  collect,
  rawConnect,
  rawUpgrade,
  closeAllClients,
  closeAllRaw,
  sleep,
  waitUntil,
} from "./lib/client.mjs";

const uid = () => Math.random().toString(36).slice(2, 10);
const sessionName = (prefix) => `e2e-${prefix}-${uid()}`;
const T = { timeout: 20_000 };

/** Joins `sessionId` with the official client and resolves with the joiner's snapshot. */
async function join(socket, sessionId, displayName) {
  const snap = once(socket, "snapshot", 3000, (s) => s?.sessionId === sessionId);
  socket.emit("join_session", displayName ? { sessionId, displayName } : { sessionId });
  return snap;
}

// Shutdown is bounded by SHUTDOWN_TIMEOUT_MS; keep it short so that a server
// that hangs on SIGTERM costs seconds, not the default 10 s per server.
const SHUTDOWN = { SHUTDOWN_TIMEOUT_MS: "2000" };

/**
 * Stops a server with SIGTERM and fails on a data race or panic in its output
 * or when it does not exit by itself (code 0) within SHUTDOWN_TIMEOUT_MS plus
 * slack: a server that has to be SIGKILLed loses what it had not flushed.
 */
async function stopClean(server) {
  closeAllClients();
  closeAllRaw();
  if (!server) return;
  const t = Date.now();
  const { code, signal, logs } = await server.stop("SIGTERM", { killAfterMs: 6000 });
  assertCleanLogs(logs, `server '${server.name}'`);
  assert.ok(
    signal !== "SIGKILL",
    `SIGTERM did not stop the server: killed after ${Date.now() - t} ms (SHUTDOWN_TIMEOUT_MS=2000); last output:\n${server.tail(8)}`,
  );
  assert.equal(code, 0, `exit status after SIGTERM; last output:\n${server.tail(8)}`);
}

// ---------------------------------------------------------------------------
describe("transport on default settings", () => {
  let srv;
  before(async () => {
    srv = await startServer({ name: "transport-default", env: SHUTDOWN });
  });
  after(() => {
    closeAllClients();
    closeAllRaw();
  });

  test("Engine.IO open packet and Socket.IO CONNECT reply carry the configured values", T, async () => {
    const raw = await rawConnect(srv.url);
    const hs = raw.handshake;
    assert.equal(typeof hs.sid, "string");
    assert.ok(hs.sid.length > 0, "sid is empty");
    assert.deepEqual(hs.upgrades, [], "WebSocket-only server must offer no upgrades");
    assert.equal(hs.pingInterval, 2500);
    assert.equal(hs.pingTimeout, 5000);
    assert.equal(hs.maxPayload, 1000000);
    const cp = raw.connectPacket;
    assert.equal(cp.type, 0, "CONNECT reply");
    assert.equal(typeof cp.data?.sid, "string", `40 reply without sid: ${JSON.stringify(cp.data)}`);
    assert.equal(typeof cp.data?.pid, "string", `40 reply without pid (recovery is on by default): ${JSON.stringify(cp.data)}`);
    await raw.close();
  });

  test("the official client connects over WebSocket", T, async () => {
    const c = await connect(srv.url);
    assert.equal(c.connected, true);
    assert.equal(typeof c.id, "string");
    assert.equal(c.io.engine.transport.name, "websocket");
    c.close();
  });

  test("emit with ack: clock_sync, a validation error as ack, heartbeat", T, async () => {
    const c = await connect(srv.url);
    const t0 = Date.now();
    const before = Date.now();
    const ack = await emitAck(c, "clock_sync", { t0 });
    const afterT = Date.now();
    assert.equal(ack?.ok, true, `clock_sync ack: ${JSON.stringify(ack)}`);
    assert.equal(ack.t0, t0, "t0 must be echoed");
    assert.equal(typeof ack.t1, "number");
    assert.equal(typeof ack.t2, "number");
    assert.ok(ack.t1 <= ack.t2, `t1 ${ack.t1} > t2 ${ack.t2}`);
    // Same machine, same clock: server receive/send times lie within the round trip.
    assert.ok(ack.t1 >= before - 1 && ack.t2 <= afterT + 1, `t1/t2 ${ack.t1}/${ack.t2} outside [${before}, ${afterT}]`);

    // An invalid request answered through the ack, not as an error event.
    const bad = await emitAck(c, "join_session", { sessionId: "no spaces allowed!" });
    assert.equal(bad?.ok, false, `join_session with an invalid id acked ${JSON.stringify(bad)}`);
    assert.equal(bad.error?.code, "INVALID_SESSION_ID", JSON.stringify(bad));

    const ts = Date.now() - 1234;
    const hb = once(c, "heartbeat_response");
    c.emit("heartbeat", { timestamp: ts });
    const res = await hb;
    assert.equal(res.timestamp, ts, `heartbeat_response ${JSON.stringify(res)}`);
    assert.equal(res.clientTimestamp, ts, `heartbeat_response ${JSON.stringify(res)}`);
    assert.equal(typeof res.serverTimestamp, "number");
    c.close();
  });

  test("room broadcast reaches all 3 members", T, async () => {
    const room = sessionName("room");
    const [a, b, c] = await Promise.all([connect(srv.url), connect(srv.url), connect(srv.url)]);
    await join(a, room, "Alice");
    await join(b, room, "Bob");

    const joinedA = once(a, "user_joined", 3000, (e) => e?.member?.socketId === c.id);
    const joinedB = once(b, "user_joined", 3000, (e) => e?.member?.socketId === c.id);
    const statsA = once(a, "room_stats", 3000, (e) => e?.memberCount === 3);
    const snapC = await join(c, room, "Carol");
    assert.equal(snapC.sessionId, room);
    assert.deepEqual(
      snapC.members.map((m) => m.socketId).sort(),
      [a.id, b.id, c.id].sort(),
      `joiner's snapshot members: ${JSON.stringify(snapC.members)}`,
    );
    const [ja, jb] = await Promise.all([joinedA, joinedB]);
    assert.equal(ja.memberCount, 3);
    assert.equal(jb.member.displayName, "Carol");
    const stats = await statsA;
    assert.equal(stats.sessionId, room);

    const got = [a, b, c].map((s) => collect(s, "snapshot"));
    const ack = await emitAck(b, "update_message", { sessionId: room, message: "hello band" });
    assert.equal(ack?.ok, true, `update_message ack ${JSON.stringify(ack)}`);
    await waitUntil(
      () => got.every((list) => list.some((s) => s.message === "hello band")),
      3000,
      "the update_message snapshot on all three members",
    );
    await sleep(100); // anything duplicated would arrive by now
    for (const [i, list] of got.entries()) {
      const withMsg = list.filter((s) => s.message === "hello band");
      assert.equal(withMsg.length, 1, `member ${i} got the snapshot ${withMsg.length} times`);
      assert.ok(withMsg[0].version > snapC.version, `version did not increase: ${withMsg[0].version} <= ${snapC.version}`);
      assert.equal(withMsg[0].members.length, 3);
    }
  });

  test("connection state recovery: same id, recovered, missed events once and in order", T, async () => {
    const room = sessionName("recover");
    const b = await connect(srv.url); // leader
    await join(b, room, "Leader");
    const a = await connect(srv.url);
    const log = [];
    a.onAny((event, arg) => log.push({ event, arg }));
    await join(a, room, "Follower");
    // A room broadcast, so that `a` holds an offset to recover from.
    await emitAck(b, "update_message", { sessionId: room, message: "before" });
    await waitUntil(() => log.some((e) => e.event === "snapshot" && e.arg.message === "before"), 3000, "'before' snapshot");

    const idBefore = a.id;
    a.io.reconnection(false); // reconnect by hand below, once the room has moved on
    const disconnected = once(a, "disconnect", 3000);
    a.io.engine.close();
    await disconnected;
    const mark = log.length;
    await sleep(150); // let the server see the close

    const ack1 = await emitAck(b, "update_message", { sessionId: room, message: "away-1" });
    assert.equal(ack1?.ok, true, JSON.stringify(ack1));
    const c = await connect(srv.url);
    await join(c, room, "Latecomer");
    const ack2 = await emitAck(b, "update_message", { sessionId: room, message: "away-2" });
    assert.equal(ack2?.ok, true, JSON.stringify(ack2));

    a.io.reconnection(true);
    const reconnected = once(a, "connect", 5000);
    a.connect();
    await reconnected;
    assert.equal(a.recovered, true, "socket.recovered must be true after a short drop");
    assert.equal(a.id, idBefore, "a recovered socket keeps its id");

    await waitUntil(
      () => log.some((e) => e.event === "snapshot" && e.arg.message === "away-2"),
      3000,
      "the missed 'away-2' snapshot",
    );
    // Still a member of the session without re-joining:
    await emitAck(b, "update_message", { sessionId: room, message: "after" });
    const afterSnap = await waitUntil(
      () => log.find((e) => e.event === "snapshot" && e.arg.message === "after"),
      3000,
      "the 'after' snapshot",
    );
    assert.ok(
      afterSnap.arg.members.some((m) => m.socketId === a.id),
      `recovered socket is no longer a member: ${JSON.stringify(afterSnap.arg.members)}`,
    );

    const missed = log.slice(mark);
    const first = (pred) => missed.findIndex(pred);
    const iAway1 = first((e) => e.event === "snapshot" && e.arg.message === "away-1");
    const iJoined = first((e) => e.event === "user_joined" && e.arg.member?.socketId === c.id);
    const iAway2 = first((e) => e.event === "snapshot" && e.arg.message === "away-2");
    const iAfter = first((e) => e.event === "snapshot" && e.arg.message === "after");
    const summary = missed.map((e) => `${e.event}:${e.arg?.message ?? e.arg?.member?.displayName ?? ""}#${e.arg?.version ?? ""}`);
    assert.ok(iAway1 >= 0 && iJoined > iAway1 && iAway2 > iJoined && iAfter > iAway2, `missed events out of order: ${summary}`);
    const joinedCount = missed.filter((e) => e.event === "user_joined" && e.arg.member?.socketId === c.id).length;
    assert.equal(joinedCount, 1, `user_joined for the latecomer delivered ${joinedCount} times: ${summary}`);
    const versions = missed.filter((e) => e.event === "snapshot").map((e) => e.arg.version);
    for (let i = 1; i < versions.length; i++) {
      assert.ok(versions[i] >= versions[i - 1], `snapshot versions go backwards: ${versions}`);
    }
  });

  test("per-message deflate on a large snapshot", T, async () => {
    const room = sessionName("deflate");
    const raw = await rawConnect(srv.url); // offers permessage-deflate, as ws does by default
    const ext = raw.upgradeHeaders["sec-websocket-extensions"] ?? "";
    assert.match(ext, /permessage-deflate/, `upgrade response extensions: '${ext}'`);
    raw.emit("join_session", { sessionId: room, displayName: "Raw-listener-with-a-long-name" });
    await raw.waitForEvent("snapshot", { where: (s) => s?.sessionId === room, timeoutMs: 3000 });

    const members = [];
    for (let i = 0; i < 4; i++) {
      const c = await connect(srv.url);
      await join(c, room, `Band-member-${i}-long-stage-name`);
      members.push(c);
    }
    await raw.waitForEvent("snapshot", { where: (s) => s?.members?.length === 5, timeoutMs: 3000 });
    await sleep(100); // let the join broadcasts settle

    let message = "";
    for (let bar = 1; message.length < 500; bar++) message += `Bar ${bar}: verse, chorus, verse. `;
    message = message.slice(0, 500);
    const official = members.map((c) => once(c, "snapshot", 3000, (s) => s?.message === message));

    const mark = raw.mark();
    const bytesBefore = raw.bytesRead();
    const ack = await emitAck(members[0], "update_message", { sessionId: room, message });
    assert.equal(ack?.ok, true, JSON.stringify(ack));
    await raw.waitForEvent("snapshot", { since: mark, where: (s) => s?.message === message, timeoutMs: 3000 });
    const wire = raw.bytesRead() - bytesBefore;
    const frames = raw.frames.slice(mark);
    const payload = frames.reduce((n, f) => n + f.size, 0);
    const big = frames.find((f) => f.text?.includes(message));
    assert.ok(big.size > 1024, `test assumption: the snapshot frame is over 1024 bytes (it is ${big.size})`);
    assert.ok(
      wire < payload / 2,
      `expected a compressed frame: ${wire} bytes on the wire for ${payload} bytes of frames`,
    );

    for (const snap of await Promise.all(official)) {
      assert.equal(snap.message, message);
      assert.equal(snap.members.length, 5);
      assert.ok(snap.members.some((m) => m.displayName === "Band-member-3-long-stage-name"));
    }
    await raw.close();
  });

  test("long-polling and EIO=3 get HTTP 400", T, async () => {
    const poll = await httpGet(`${srv.url}/socket.io/?EIO=4&transport=polling`);
    assert.equal(poll.status, 400, `polling: ${poll.status} ${poll.body}`);
    assert.deepEqual(poll.json(), { code: 0, message: "Transport unknown" });
    assert.match(poll.headers["content-type"] ?? "", /json/);

    const poll3 = await httpGet(`${srv.url}/socket.io/?EIO=3&transport=polling`);
    assert.equal(poll3.status, 400, `EIO=3 polling: ${poll3.status} ${poll3.body}`);
    const body3 = poll3.json();
    assert.equal(typeof body3.code, "number", poll3.body);
    assert.equal(typeof body3.message, "string", poll3.body);

    const ws3 = await rawUpgrade(srv.url, { EIO: "3", transport: "websocket" });
    assert.equal(ws3.status, 400, `EIO=3 WebSocket upgrade answered ${ws3.status}`);
    assert.match(ws3.body, /Unsupported protocol version/, `EIO=3 upgrade body: ${ws3.body}`);
  });

  test("server: exits cleanly on SIGTERM, no data race, no panic", T, async () => {
    await stopClean(srv);
  });
});

// ---------------------------------------------------------------------------
describe("transport with fast pings and a small maxPayload", () => {
  let srv;
  before(async () => {
    srv = await startServer({
      name: "transport-fast",
      env: { ...SHUTDOWN, SOCKET_PING_INTERVAL: "300", SOCKET_PING_TIMEOUT: "300", SOCKET_MAX_BUFFER_SIZE: "20000" },
    });
  });
  after(() => {
    closeAllClients();
    closeAllRaw();
  });

  test("a client that stops answering pings is closed after pingInterval + pingTimeout", T, async () => {
    const silent = await rawConnect(srv.url, { answerPings: false });
    const control = await rawConnect(srv.url);
    const official = await connect(srv.url);
    assert.equal(silent.handshake.pingInterval, 300);
    assert.equal(silent.handshake.pingTimeout, 300);
    assert.equal(silent.handshake.maxPayload, 20000);

    const closed = await Promise.race([silent.closed, sleep(5000).then(() => null)]);
    assert.ok(closed, `a client that never answers pings was still open after 5 s; ${silent.describe()}`);
    const elapsed = closed.at - silent.openedAt;
    assert.ok(silent.pingsReceived >= 1, "the server never pinged");
    assert.ok(elapsed >= 500, `closed after ${elapsed} ms, before pingInterval + pingTimeout (600 ms)`);
    assert.ok(elapsed <= 2000, `closed after ${elapsed} ms, long after pingInterval + pingTimeout (600 ms)`);

    // Clients that answer stay connected through many intervals.
    const wait = 1500 - (Date.now() - control.openedAt);
    if (wait > 0) await sleep(wait);
    assert.equal(control.isOpen, true, `a client answering pings was dropped: ${control.describe()}`);
    assert.ok(control.pingsReceived >= 3, `only ${control.pingsReceived} pings in 1.5 s with pingInterval 300`);
    assert.equal(official.connected, true, "the official client was dropped");
    const ack = await emitAck(official, "clock_sync", { t0: Date.now() });
    assert.equal(ack?.ok, true);
  });

  test("frames over maxPayload close that connection with 1009, compressed or not", T, async () => {
    const bystander = await rawConnect(srv.url);
    const max = bystander.handshake.maxPayload;
    const frameOf = (size) => {
      const head = '42["heartbeat",{"timestamp":1,"pad":"';
      const tail = '"}]';
      return head + "x".repeat(size - head.length - tail.length) + tail;
    };

    // Just under the limit: allowed (whatever the event handler thinks of it).
    const under = await rawConnect(srv.url, { perMessageDeflate: false });
    under.send(frameOf(max - 100));
    under.emit("heartbeat", { timestamp: 42 });
    await under.waitForEvent("heartbeat_response", { where: (r) => r?.timestamp === 42 });
    assert.equal(under.isOpen, true);

    const plain = await rawConnect(srv.url, { perMessageDeflate: false });
    plain.send(frameOf(max + 1));
    const c1 = await Promise.race([plain.closed, sleep(3000).then(() => null)]);
    assert.ok(c1, "an uncompressed frame over maxPayload did not close the connection");
    assert.equal(c1.code, 1009, `close code for an oversized frame: ${c1.code} ${c1.reason}`);

    // Compressed on the wire (a few hundred bytes) but over maxPayload once inflated.
    const zipped = await rawConnect(srv.url, { perMessageDeflate: true });
    assert.match(zipped.upgradeHeaders["sec-websocket-extensions"] ?? "", /permessage-deflate/);
    zipped.send(frameOf(max * 4), { compress: true });
    const c2 = await Promise.race([zipped.closed, sleep(3000).then(() => null)]);
    assert.ok(c2, "a compressed frame inflating past maxPayload did not close the connection");
    assert.equal(c2.code, 1009, `close code for an oversized inflated frame: ${c2.code} ${c2.reason}`);

    // The other connections are untouched.
    const m = bystander.mark();
    bystander.emit("heartbeat", { timestamp: 7 });
    await bystander.waitForEvent("heartbeat_response", { since: m, where: (r) => r?.timestamp === 7 });
  });

  test("server: exits cleanly on SIGTERM, no data race, no panic", T, async () => {
    await stopClean(srv);
  });
});

// ---------------------------------------------------------------------------
describe("hostile input", () => {
  let srv;
  let baseline;
  before(async () => {
    srv = await startServer({ name: "transport-hostile", env: SHUTDOWN });
  });
  after(() => {
    closeAllClients();
    closeAllRaw();
  });

  /** Goroutine count once it stops changing (two equal reads in a row). */
  async function settledGoroutines(timeoutMs = 3000) {
    let prev = await goroutines(srv);
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      await sleep(100);
      const n = await goroutines(srv);
      if (n === prev) return n;
      prev = n;
    }
    return prev;
  }

  test("baseline goroutine count from /metrics", T, async () => {
    // Warm up whatever starts lazily with a first connection.
    const warm = await connect(srv.url);
    assert.equal((await emitAck(warm, "clock_sync", { t0: Date.now() }))?.ok, true);
    warm.close();
    await sleep(200);
    baseline = await settledGoroutines();
    assert.ok(baseline > 0);
  });

  const heartbeatOK = async (raw, n) => {
    const m = raw.mark();
    raw.emit("heartbeat", { timestamp: n });
    await raw.waitForEvent("heartbeat_response", { since: m, where: (r) => r?.timestamp === n });
  };

  const garbage = [
    { name: "truncated JSON", send: '42["heartbeat",{"timestamp":1', code: "INVALID_PAYLOAD" },
    { name: "unknown Socket.IO packet type", send: '48["heartbeat",{}]', code: "INVALID_PAYLOAD" },
    { name: "empty Socket.IO packet", send: "4", code: "INVALID_PAYLOAD" },
    { name: "event that is not an array", send: '42{"event":"heartbeat"}', code: "INVALID_PAYLOAD" },
    { name: "empty event array", send: "42[]", code: "INVALID_PAYLOAD" },
    { name: "non-string event name", send: '42[123,{"timestamp":1}]', code: "INVALID_PAYLOAD" },
    { name: "BINARY_EVENT (5)", send: '451-["heartbeat",{"_placeholder":true,"num":0}]', code: "INVALID_PAYLOAD" },
    { name: "BINARY_ACK (6)", send: '461-3[{"_placeholder":true,"num":0}]', code: "INVALID_PAYLOAD" },
    { name: "binary WebSocket frame", send: Buffer.from([0x04, 0x02, 0xff, 0x00, 0x7b]), binary: true, code: "INVALID_PAYLOAD" },
    {
      // Legal JSON (under Go's nesting limit and the 16 KB event cap), but not an object.
      name: "nested JSON 5000 deep",
      send: `42["heartbeat",${"[".repeat(5000)}${"]".repeat(5000)}]`,
      code: "INVALID_PAYLOAD",
    },
    {
      name: "deeply nested JSON",
      send: `42["heartbeat",${"[".repeat(100_000)}${"]".repeat(100_000)}]`,
      code: "INVALID_PAYLOAD",
    },
    { name: "event without payload", send: '42["play"]', code: "INVALID_PAYLOAD", event: "play" },
    { name: "unknown event", send: '42["no_such_event",{"x":1}]', code: "UNKNOWN_EVENT", event: "no_such_event" },
  ];

  test("malformed packets get an INVALID_PAYLOAD/UNKNOWN_EVENT error and the connection stays usable", T, async () => {
    const raw = await rawConnect(srv.url);
    let n = 1000;
    for (const g of garbage) {
      const m = raw.mark();
      raw.send(g.send, { binary: Boolean(g.binary) });
      let err;
      try {
        err = await raw.waitForEvent("error", { since: m, timeoutMs: 2000 });
      } catch (e) {
        throw new Error(`${g.name}: sent ${JSON.stringify(String(g.send).slice(0, 60))}, expected error ${g.code}: ${e.message}`);
      }
      assert.equal(err?.code, g.code, `${g.name}: error ${JSON.stringify(err)}`);
      assert.equal(typeof err.message, "string", `${g.name}: error without message ${JSON.stringify(err)}`);
      if (g.event) assert.equal(err.event, g.event, `${g.name}: error.event ${JSON.stringify(err)}`);
      try {
        await heartbeatOK(raw, n++);
      } catch (e) {
        throw new Error(`after ${g.name}: the connection no longer answers a heartbeat: ${e.message}`);
      }
    }

    // With an ack id, the error comes back as the ack.
    const m = raw.mark();
    raw.send('427["play"]');
    const ackData = await raw.waitForAck(7, { since: m });
    assert.equal(ackData?.[0]?.ok, false, `ack for 427["play"]: ${JSON.stringify(ackData)}`);
    assert.equal(ackData[0].error?.code, "INVALID_PAYLOAD", JSON.stringify(ackData));
    assert.equal(raw.isOpen, true);
  });

  test("a frame over maxPayload (default 1 MB) closes only that connection, with 1009", T, async () => {
    const keeper = await rawConnect(srv.url);
    const big = await rawConnect(srv.url, { perMessageDeflate: false });
    const max = big.handshake.maxPayload;
    big.send(`42["heartbeat",{"pad":"${"y".repeat(max)}"}]`);
    const closed = await Promise.race([big.closed, sleep(3000).then(() => null)]);
    assert.ok(closed, "a frame over maxPayload did not close the connection");
    assert.equal(closed.code, 1009, `close code ${closed.code} ${closed.reason}`);
    await heartbeatOK(keeper, 1);
  });

  test("a fresh official client connects and gets acks after all that", T, async () => {
    const c = await connect(srv.url);
    const ack = await emitAck(c, "clock_sync", { t0: 1 });
    assert.equal(ack?.ok, true, JSON.stringify(ack));
    const room = sessionName("after-hostile");
    const snap = await join(c, room, "Survivor");
    assert.equal(snap.members.length, 1);
    c.close();
  });

  test("goroutines return to the baseline once hostile clients are gone", T, async () => {
    assert.equal(typeof baseline, "number", "baseline test did not run");
    // Several more kinds of client misbehaving at once.
    const idle = [];
    for (let i = 0; i < 4; i++) idle.push(await rawConnect(srv.url)); // connected, silent
    for (let i = 0; i < 2; i++) idle.push(await rawConnect(srv.url, { namespace: false })); // Engine.IO only
    const liar = await rawConnect(srv.url, { answerPings: false }); // stops answering pings
    idle.push(liar);
    const half = await rawConnect(srv.url);
    half.send('42["heartbeat",'); // and then vanish without a close frame
    idle.push(half);

    // They are really there (the count itself need not move: the transport
    // may serve idle connections without a goroutine each).
    const during = await metrics(srv);
    assert.ok(
      during.connections?.active >= 6,
      `connections.active is ${during.connections?.active} with 6 Socket.IO clients connected`,
    );

    for (const [i, c] of idle.entries()) {
      if (i % 2) c.terminate();
      else await c.close();
    }
    closeAllRaw();
    closeAllClients();

    const seen = [];
    const settled = await waitUntil(
      async () => {
        const m = await metrics(srv);
        seen.push(`${m.runtime?.goroutines}/${m.connections?.active}`);
        return m.runtime?.goroutines <= baseline + 3 && m.connections?.active === 0;
      },
      3000,
      "goroutines back to baseline",
      100,
    ).catch(() => false);
    assert.ok(
      settled,
      `goroutines/connections.active did not return to ${baseline} (+3)/0 within 3 s: ${seen.join(" ")}`,
    );
  });

  test("server: exits cleanly on SIGTERM, no data race, no panic", T, async () => {
    await stopClean(srv);
  });
});
