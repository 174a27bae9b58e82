// scroll_tick end to end (issue #3's acceptance) and "no session hijack".
//
// Acceptance: over 60 s of play with SCROLL_TICK_INTERVAL=16,
//   - last.positionMs - first.positionMs equals
//     last.serverTimestamp - first.serverTimestamp within 2 ms (no drift:
//     position is derived from the anchor, never accumulated), and
//   - ticks arrive at 62.5/s within 2% (count / elapsed between the first
//     and the last tick, as the follower's app receives them).
// Also: ticks stop on pause, carry the new position after a seek, go only
// to the sockets that asked for them (tickIntervalMs), and a socket that
// does not lead a session cannot change it, whatever it sends in whatever
// order.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { startServer, httpGet, assertCleanLogs, plainServer } from "./lib/server.mjs";
import { connect, once, closeAllClients, sleep, waitUntil } from "./lib/client.mjs";

const uid = () => Math.random().toString(36).slice(2, 10);
const TICK_MS = 16;

async function send(socket, event, payload, timeoutMs = 3000) {
  try {
    return await socket.timeout(timeoutMs).emitWithAck(event, payload);
  } catch (err) {
    throw new Error(`no ack for '${event}' ${JSON.stringify(payload)} within ${timeoutMs} ms (${err?.message ?? err})`);
  }
}

async function ok(socket, event, payload) {
  const ack = await send(socket, event, payload);
  assert.equal(ack?.ok, true, `${event} ${JSON.stringify(payload)} -> ${JSON.stringify(ack)}`);
  return ack;
}

async function member(url, sessionId, displayName) {
  const s = await connect(url);
  await ok(s, "join_session", { sessionId, displayName });
  return s;
}

/** Records scroll_tick with the local receive time (monotonic ms). */
function tickLog(socket, sessionId) {
  const ticks = [];
  socket.on("scroll_tick", (t) => {
    if (t?.sessionId === sessionId) ticks.push({ ...t, recv: performance.now() });
  });
  return ticks;
}

/**
 * Resolves with the next `event`'s payload and the length `log` had when
 * it arrived. The length is taken in the listener itself (once's `where`
 * runs there): socket.io-client hands over the frames of one network read
 * one after another without yielding, so a promise continuation runs only
 * after the frames behind the event (ticks) have been logged too.
 */
function markOn(socket, event, log, timeoutMs = 2000) {
  let index = -1;
  const mark = () => ((index = log.length), true);
  return once(socket, event, timeoutMs, mark).then((payload) => ({ payload, index }));
}

async function getState(srv, id) {
  const res = await httpGet(`${srv.url}/sessions/${id}`);
  assert.equal(res.status, 200, `GET /sessions/${id}: ${res.status}`);
  return res.json();
}

const near = (a, b, eps, what) =>
  assert.ok(Math.abs(a - b) <= eps, `${what}: ${a} vs ${b} (|diff| ${Math.abs(a - b).toFixed(3)} > ${eps})`);

// ---------------------------------------------------------------------------
describe(`scroll_tick (SCROLL_TICK_INTERVAL=${TICK_MS})`, () => {
  let srv;
  before(async () => {
    srv = await startServer({
      name: "ticks",
      env: { SCROLL_TICK_INTERVAL: String(TICK_MS), RATE_LIMIT_MAX_REQUESTS: "100000", HTTP_RATE_LIMIT_MAX_REQUESTS: "100000" },
    });
  });
  after(async () => {
    closeAllClients();
    await srv?.stop();
  });

  test("ticks stop on pause and resume from the paused position", { timeout: 20_000 }, async () => {
    const id = `tick-pause-${uid()}`;
    const leader = await member(srv.url, id, "L");
    const follower = await member(srv.url, id, "F");
    const ticks = tickLog(follower, id);
    const play = await ok(leader, "play", { sessionId: id });
    const startsAt = play.state.startsAt;
    await sleep(500);
    assert.ok(ticks.length > 10, `only ${ticks.length} ticks in 500 ms of play`);

    const pauseEv = markOn(follower, "pause", ticks);
    await ok(leader, "pause", { sessionId: id });
    const { payload: p, index: pausedAtIndex } = await pauseEv;
    await sleep(500);
    const late = ticks.slice(pausedAtIndex);
    assert.deepEqual(late, [], `${late.length} scroll_tick arrived after the pause event`);
    for (const t of ticks) {
      assert.ok(t.serverTimestamp <= p.serverTimestamp, `tick at ${t.serverTimestamp} is after the pause at ${p.serverTimestamp}`);
      near(t.positionMs, t.serverTimestamp - startsAt, 0.01, "tick position while playing");
    }
    near(p.position, p.serverTimestamp - startsAt, 0.01, "pause position");

    // Resume: positions continue from the paused one.
    const mark = ticks.length;
    const resumed = await ok(leader, "play", { sessionId: id });
    await waitUntil(() => ticks.length > mark + 10, 2000, "ticks after resuming");
    for (const t of ticks.slice(mark)) {
      near(t.positionMs, p.position + Math.max(0, t.serverTimestamp - resumed.state.startsAt), 0.01, "tick position after resume");
    }
    await ok(leader, "stop", { sessionId: id });
  });

  test("ticks carry the new position right after a seek, and the new tempo after set_tempo", { timeout: 20_000 }, async () => {
    const id = `tick-seek-${uid()}`;
    const leader = await member(srv.url, id, "L");
    const follower = await member(srv.url, id, "F");
    const ticks = tickLog(follower, id);
    await ok(leader, "play", { sessionId: id });
    await sleep(300);

    const seekEv = markOn(follower, "seek", ticks);
    const seekAck = await ok(leader, "seek", { sessionId: id, position: 30_000 });
    const { payload: s, index: seekIndex } = await seekEv;
    assert.equal(s.position, 30_000);
    await sleep(300);
    const after = ticks.slice(seekIndex);
    assert.ok(after.length > 5, `only ${after.length} ticks after the seek`);
    for (const t of after) {
      near(t.positionMs, 30_000 + (t.serverTimestamp - s.serverTimestamp), 0.01, "tick position after seek");
      assert.equal(t.version, seekAck.state.version, "tick version differs from the seek's snapshot version");
    }
    for (const t of ticks.slice(0, seekIndex)) assert.ok(t.positionMs < 30_000, "a tick before the seek event already had the new position");

    const tempoAck = await ok(leader, "set_tempo", { sessionId: id, tempo: 90 });
    const mark = ticks.length;
    await waitUntil(() => ticks.length > mark + 5, 2000, "ticks after set_tempo");
    const t = ticks.at(-1);
    assert.equal(t.tempoBpm, 90);
    assert.equal(t.version, tempoAck.state.version);
    // A tempo change does not move the position.
    near(t.positionMs, 30_000 + (t.serverTimestamp - s.serverTimestamp), 0.01, "tick position after set_tempo");

    // Seeking while paused produces no ticks.
    await ok(leader, "pause", { sessionId: id });
    await sleep(100);
    const pausedMark = ticks.length;
    await ok(leader, "seek", { sessionId: id, position: 5000 });
    await sleep(300);
    assert.equal(ticks.length, pausedMark, "a seek while paused started ticks");
  });

  test("ticks on demand: tickIntervalMs 0 takes none, 250 at most 4/s, absent every tick; state changes reach all", { timeout: 20_000 }, async () => {
    const id = `ondemand-${uid()}`;
    const leader = await member(srv.url, id, "Leader");
    const plain = await member(srv.url, id, "MobileApp"); // asks for nothing: today's behaviour
    const sdk = await connect(srv.url);
    await ok(sdk, "join_session", { sessionId: id, displayName: "SDK", tickIntervalMs: 0 });
    const slow = await connect(srv.url);
    await ok(slow, "join_session", { sessionId: id, displayName: "Slow", tickIntervalMs: 250 });
    // Out-of-range choices are refused and change nothing.
    for (const bad of [-1, 60_001, "fast"]) {
      const ack = await send(slow, "join_session", { sessionId: id, tickIntervalMs: bad });
      assert.equal(ack?.error?.code, "INVALID_PAYLOAD", `tickIntervalMs ${JSON.stringify(bad)} -> ${JSON.stringify(ack)}`);
    }
    const logs = [plain, sdk, slow].map((s) => tickLog(s, id));
    const seeks = [plain, sdk, slow].map((s) => once(s, "seek", 3000));
    await ok(leader, "play", { sessionId: id });
    await sleep(2000);
    await ok(leader, "seek", { sessionId: id, position: 1000 });
    await Promise.all(seeks);
    await ok(leader, "pause", { sessionId: id });
    const [p, n, w] = logs.map((l) => l.length);
    assert.ok(p > 100, `the app that asked for nothing got ${p} ticks in 2 s`);
    assert.equal(n, 0, "the SDK that asked for none got ticks");
    assert.ok(w >= 6 && w <= 10, `at most one per 250 ms over ~2 s: got ${w}`);
    // A re-join that does not mention tickIntervalMs keeps the choice.
    await ok(sdk, "join_session", { sessionId: id });
    await ok(leader, "play", { sessionId: id });
    await sleep(300);
    await ok(leader, "pause", { sessionId: id });
    assert.equal(logs[1].length, 0, "a re-join without tickIntervalMs reset the choice");
  });

  test("no session hijack: non-leaders and outsiders send every state-changing event in many orders; nothing changes", { timeout: 60_000 }, async () => {
    const id = `hijack-${uid()}`;
    const other = `hijack-other-${uid()}`;
    const leader = await member(srv.url, id, "Leader");
    const follower = await member(srv.url, id, "Follower");
    const outsider = await connect(srv.url); // in no session at all
    const foreignLeader = await member(srv.url, other, "LeadsAnotherSession");
    // The lead was only given by default; asking for it protects it (a
    // defaulted lead yields to whoever asks, which is no hijack).
    await ok(leader, "set_role", { sessionId: id, role: "leader" });
    await ok(leader, "set_tempo", { sessionId: id, tempo: 123 });
    await ok(leader, "seek", { sessionId: id, position: 4321 });
    await ok(leader, "update_message", { sessionId: id, message: "ours" });

    // Payloads also try to pass as the leader.
    const forged = { socketId: leader.id, leaderSocketId: follower.id, memberId: leader.id, from: leader.id, role: "leader", isLeader: true };
    const commands = [
      ["set_tempo", { tempo: 200 }],
      ["play", {}],
      ["play", { delayMs: 100 }],
      ["pause", {}],
      ["seek", { position: 99_999 }],
      ["stop", {}],
      ["set_role", { role: "leader" }],
      ["update_message", { message: "hijacked" }],
      ["leave_session", {}],
    ];
    const attackers = [
      // A member that does not lead: may only message (legitimately) and leave; both excluded here.
      { name: "follower", s: follower, code: "NOT_LEADER", skip: new Set(["update_message", "leave_session"]) },
      { name: "outsider", s: outsider, code: "NOT_IN_SESSION", skip: new Set() },
      { name: "leader of another session", s: foreignLeader, code: "NOT_IN_SESSION", skip: new Set() },
    ];
    const moves = [];
    for (const a of attackers) {
      for (const [event, extra] of commands) {
        if (!a.skip.has(event)) moves.push({ a, event, payload: { ...forged, ...extra, sessionId: id } });
      }
    }

    // Deterministic shuffles (seeded), so a failing order can be replayed.
    let seed = 0x5eed;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const shuffle = (xs) => {
      const out = [...xs];
      for (let i = out.length - 1; i > 0; i--) {
        const j = Math.floor(rand() * (i + 1));
        [out[i], out[j]] = [out[j], out[i]];
      }
      return out;
    };

    const leaderSaw = [];
    leader.onAny((event, arg) => {
      if (event !== "scroll_tick") leaderSaw.push(`${event}#${arg?.version ?? ""}`);
    });
    const errorsFor = new Map(attackers.map((a) => [a.s, []]));
    for (const a of attackers) a.s.on("error", (e) => errorsFor.get(a.s).push(e));

    const essence = (st) => ({
      version: st.version, tempo: st.tempo, message: st.message, isPlaying: st.isPlaying, startsAt: st.startsAt,
      position: st.isPlaying ? "(playing)" : st.position, leaderSocketId: st.leaderSocketId, leaderTerm: st.leaderTerm,
      members: st.members.map((m) => `${m.socketId}:${m.role}`),
    });
    const expectedCode = (m) => (m.event === "set_role" && m.a.code === "NOT_LEADER" ? "NOT_LEADER" : m.a.code);

    for (const phase of ["paused", "playing"]) {
      if (phase === "playing") await ok(leader, "play", { sessionId: id });
      const before = essence(await getState(srv, id));
      leaderSaw.length = 0;
      let withoutAck = 0;
      for (let round = 0; round < 12; round++) {
        const order = shuffle(moves);
        if (round % 3 === 2) {
          // All at once: every attacker's events interleaved on the server.
          const acks = await Promise.all(order.map((m) => send(m.a.s, m.event, m.payload)));
          acks.forEach((ack, i) => {
            assert.equal(ack?.ok, false, `${phase} r${round} ${order[i].a.name} ${order[i].event}: accepted ${JSON.stringify(ack)}`);
            assert.equal(ack.error.code, expectedCode(order[i]), `${order[i].a.name} ${order[i].event}: ${JSON.stringify(ack)}`);
          });
        } else {
          for (const [i, m] of order.entries()) {
            if ((i + round) % 2) {
              m.a.s.emit(m.event, m.payload); // no ack: refused through an `error` event
              withoutAck++;
            } else {
              const ack = await send(m.a.s, m.event, m.payload);
              assert.equal(ack?.ok, false, `${phase} r${round} ${m.a.name} ${m.event}: accepted ${JSON.stringify(ack)}`);
              assert.equal(ack.error.code, expectedCode(m), `${m.a.name} ${m.event}: ${JSON.stringify(ack)}`);
            }
          }
        }
        assert.deepEqual(essence(await getState(srv, id)), before, `${phase}, round ${round}: the session changed`);
      }
      // The follower stepping down to follower is accepted and changes nothing.
      assert.equal((await ok(follower, "set_role", { sessionId: id, role: "follower" })).state.version, before.version);
      await sleep(200);
      const errors = [...errorsFor.values()].reduce((n, list) => n + list.length, 0);
      assert.equal(errors, withoutAck, `${withoutAck} refused events without ack, ${errors} error events`);
      for (const list of errorsFor.values()) {
        for (const e of list) assert.ok(["NOT_LEADER", "NOT_IN_SESSION"].includes(e.code), `error ${JSON.stringify(e)}`);
        list.length = 0;
      }
      assert.deepEqual(leaderSaw, [], `the leader received broadcasts during the ${phase} barrage`);
      assert.deepEqual(essence(await getState(srv, id)), before, `${phase}: the session changed`);
    }

    // The server still answers everyone, and the real leader still leads.
    for (const a of attackers) assert.equal((await send(a.s, "heartbeat", { timestamp: 1 }))?.ok, true, `${a.name} got no answer`);
    const seek = await ok(leader, "seek", { sessionId: id, position: 1000 });
    assert.equal(seek.state.position >= 1000, true);
    const st = await getState(srv, id);
    assert.equal(st.leaderSocketId, leader.id);
    assert.equal(st.memberCount, 2);
    const otherSt = await getState(srv, other);
    assert.equal(otherSt.leaderSocketId, foreignLeader.id, "the other session's leadership moved");
    assert.equal(otherSt.memberCount, 1);
    await ok(leader, "stop", { sessionId: id });
  });

  test("server: no data race, no panic", { timeout: 20_000 }, async () => {
    closeAllClients();
    const { logs } = await srv.stop();
    assertCleanLogs(logs, "ticks server");
  });
});

// ---------------------------------------------------------------------------
// The accuracy figures measure the server, so they run against a build
// without the race detector: under -race every goroutine runs several times
// slower, and on a busy 2-CPU machine the tick loop wakes late and skips
// slots (measured: 60.5-61.0 ticks/s, gaps up to 140 ms, with -race; exactly
// 62.5/s without it on the same machine at the same time). The behaviour
// tests above keep running under -race.
describe(`scroll_tick accuracy over 60 s (SCROLL_TICK_INTERVAL=${TICK_MS}, build without -race)`, () => {
  let srv;
  before(async () => {
    srv = await startServer({ name: "ticks-accuracy", bin: await plainServer(), env: { SCROLL_TICK_INTERVAL: String(TICK_MS) } });
  }, { timeout: 300_000 });
  after(async () => {
    closeAllClients();
    await srv?.stop();
  });

  test("60 s of play: no drift (position vs serverTimestamp within 2 ms) and 62.5 ticks/s within 2%", { timeout: 90_000 }, async (t) => {
    const id = `tick-60s-${uid()}`;
    const leader = await member(srv.url, id, "L");
    const follower = await member(srv.url, id, "F");
    const ticks = tickLog(follower, id);
    const play = await ok(leader, "play", { sessionId: id });
    await waitUntil(() => ticks.length > 0, 2000, "the first tick");
    await sleep(60_000);
    const endMark = ticks.length;
    await ok(leader, "pause", { sessionId: id });
    const run = ticks.slice(0, endMark);
    const first = run[0];
    const last = run.at(-1);

    // No drift, end to end and at every tick on the way.
    const posSpan = last.positionMs - first.positionMs;
    const timeSpan = last.serverTimestamp - first.serverTimestamp;
    assert.ok(timeSpan >= 59_000, `ticks cover only ${timeSpan} ms`);
    near(posSpan, timeSpan, 2, "last-first positionMs vs last-first serverTimestamp");
    let worst = 0;
    for (const x of run) {
      worst = Math.max(worst, Math.abs(x.positionMs - first.positionMs - (x.serverTimestamp - first.serverTimestamp)));
      near(x.positionMs, x.serverTimestamp - play.state.startsAt, 2, "tick position vs the play anchor");
    }

    // Rate, as received: count / elapsed between the first and the last tick.
    const elapsedS = (last.recv - first.recv) / 1000;
    const rate = (run.length - 1) / elapsedS;
    const serverRate = (run.length - 1) / (timeSpan / 1000);
    const want = 1000 / TICK_MS;
    t.diagnostic(`${run.length} ticks; received ${rate.toFixed(3)}/s, emitted ${serverRate.toFixed(3)}/s (want ${want}); worst drift ${worst.toFixed(3)} ms`);
    assert.ok(Math.abs(rate - want) <= want * 0.02, `ticks arrived at ${rate.toFixed(3)}/s, want ${want}/s within 2%`);

    // Well-formed and in order: one session, one version, increasing time.
    for (let i = 1; i < run.length; i++) {
      assert.ok(run[i].serverTimestamp > run[i - 1].serverTimestamp, `tick ${i} is not after tick ${i - 1}`);
    }
    assert.deepEqual([...new Set(run.map((x) => x.version))], [play.state.version], "tick versions changed without a state change");
    assert.deepEqual([...new Set(run.map((x) => x.tempoBpm))], [120]);
  });

  test("server: clean logs", { timeout: 20_000 }, async () => {
    closeAllClients();
    const { code, logs } = await srv.stop();
    assertCleanLogs(logs, "ticks-accuracy server");
    assert.equal(code, 0);
  });
});
