// The BandSync mobile app's own flow, end to end, with the official
// socket.io-client@4 configured as the app configures it (WebSocket only,
// automatic reconnection):
//
//   on every `connect`  -> join_session { sessionId }      (nothing else)
//   every 2.5 s         -> latency_probe { timestamp, sessionId }
//   every 5 s           -> heartbeat { timestamp }; RTT = Date.now() - response.timestamp
//   reads state only from `snapshot`, `scroll_tick` and `room_stats`
//
// Two devices run that flow for ~12 s while the leader plays; each one's
// connection is forcibly dropped once (socket.io.engine.close(), as when a
// phone changes networks) and the app reconnects and re-joins on its own.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, httpGet, assertCleanLogs } from "./lib/server.mjs";
import { emitAck, closeAllClients, once, sleep, waitUntil } from "./lib/client.mjs";
import { MobileApp, uid } from "./lib/mobile-app.mjs";

async function sessionState(srv, id) {
  const res = await httpGet(`${srv.url}/sessions/${id}`);
  assert.equal(res.status, 200, `GET /sessions/${id}: ${res.status}`);
  return res.json();
}

// ---------------------------------------------------------------------------
describe("mobile app flow (connection state recovery on)", () => {
  let srv;
  before(async () => {
    srv = await startServer({ name: "mobile-flow" });
  });
  after(async () => {
    closeAllClients();
    await srv?.stop();
  });

  test("join with only sessionId, probe every 2.5 s, heartbeat every 5 s, forced reconnects, re-join: counts, roles and reads stay right", { timeout: 40_000 }, async () => {
    const sessionId = `mobile-${uid()}`;
    const leader = await new MobileApp(srv.url, sessionId, "leader-phone").start();
    const follower = await new MobileApp(srv.url, sessionId, "follower-phone").start();
    const t0 = Date.now();
    try {
      // The joiner's snapshot shows the app what it needs.
      assert.equal(follower.snapshot.memberCount, 2);
      assert.equal(follower.snapshot.leaderSocketId, leader.socket.id, "the first phone leads");
      assert.deepEqual(follower.snapshot.members.map((m) => m.role), ["leader", "follower"]);

      const play = await emitAck(leader.socket, "play", { sessionId });
      assert.equal(play?.ok, true, JSON.stringify(play));
      const startsAt = play.state.startsAt;
      await sleep(3000);

      // The follower's network drops; the app reconnects and re-joins by itself.
      const fr = await follower.dropAndReconnect();
      assert.equal(fr.reason, "forced close"); // socket.io-client's name for engine.close()
      assert.equal(fr.recovered, true, "a 100 ms drop must be recovered (RECOVERY_WINDOW_MS 120000)");
      assert.equal(fr.idAfter, fr.idBefore, "the recovered socket must keep its id (members list it by id)");
      await waitUntil(() => follower.connects === 2, 3000, "the app's re-join after reconnecting");
      await sleep(2500);

      // The leader's network drops too: it keeps leadership (LEADER_GRACE_MS 5000) and playback never stops.
      const lr = await leader.dropAndReconnect();
      assert.equal(lr.recovered, true);
      assert.equal(lr.idAfter, lr.idBefore);
      await sleep(Math.max(0, t0 + 12_000 - Date.now())); // ~12 s of the app's cadence in all

      // Leader is still the leader and can drive transport after its reconnect.
      const pause = await emitAck(leader.socket, "pause", { sessionId });
      assert.equal(pause?.ok, true, `the reconnected leader cannot pause: ${JSON.stringify(pause)}`);
      await sleep(300);

      // --- what the server thinks -----------------------------------------
      const st = await sessionState(srv, sessionId);
      assert.equal(st.memberCount, 2, `member count after two reconnects: ${JSON.stringify(st.members)}`);
      assert.deepEqual(
        st.members.map((m) => [m.socketId, m.role, m.connected]),
        [[leader.socket.id, "leader", true], [follower.socket.id, "follower", true]],
      );
      assert.equal(st.leaderSocketId, leader.socket.id);

      // --- what each app saw ------------------------------------------------
      for (const app of [leader, follower]) {
        assert.deepEqual(app.problems, [], `${app.name} could not read: ${app.problems.slice(0, 5).join("; ")}`);
        assert.deepEqual(app.of("error").map((e) => e.arg), [], `${app.name} got errors`);
        assert.deepEqual(app.of("rate_limit_exceeded").map((e) => e.arg), [], `${app.name} was rate limited at the app's own cadence`);
        assert.equal(app.connects, 2, `${app.name} connected ${app.connects} times`);

        // Probes: one answer per probe, echoing its timestamp.
        assert.ok(app.sentProbes.length >= 4, `${app.name} sent only ${app.sentProbes.length} probes`);
        await waitUntil(() => app.of("latency_response").length >= app.sentProbes.length, 3000, `${app.name}'s latency_response`);
        assert.deepEqual(app.of("latency_response").map((e) => e.arg.clientTimestamp), app.sentProbes);
        // Heartbeats: one answer each; the app's RTT (Date.now() - timestamp) is a real number.
        assert.ok(app.sentBeats.length >= 2, `${app.name} sent only ${app.sentBeats.length} heartbeats`);
        await waitUntil(() => app.of("heartbeat_response").length >= app.sentBeats.length, 3000, `${app.name}'s heartbeat_response`);
        assert.deepEqual(app.of("heartbeat_response").map((e) => e.arg.timestamp), app.sentBeats);
        for (const rtt of app.rtts) assert.ok(Number.isFinite(rtt) && rtt >= 0, `${app.name} computed RTT ${rtt}`);

        // Every snapshot and room_stats after both phones joined counts the
        // connected phones: 2, or 1 while the other one's network was down;
        // the last room_stats, what the app shows now, counts 2.
        const joinedAt = follower.events.find((e) => e.event === "snapshot")?.at ?? 0;
        for (const e of app.events) {
          if (e.at < joinedAt || !["snapshot", "room_stats"].includes(e.event)) continue;
          assert.ok([1, 2].includes(e.arg.memberCount), `${app.name} read memberCount ${e.arg.memberCount} from ${e.event} v${e.arg.version}`);
          if (e.event === "snapshot") {
            assert.equal(e.arg.leaderSocketId, leader.socket.id, `${app.name}: leadership moved (${e.event} v${e.arg.version})`);
          }
        }
        assert.equal(app.of("room_stats").at(-1)?.arg.memberCount, 2, `${app.name}'s shown member count`);
        // Snapshot versions never go backwards (the app drops stale ones; none should be needed).
        const versions = app.of("snapshot").map((e) => e.arg.version);
        for (let i = 1; i < versions.length; i++) {
          assert.ok(versions[i] >= versions[i - 1], `${app.name}: snapshot versions go backwards: ${versions}`);
        }
        // The app's own socket is listed in its newest snapshot, connected, with its role.
        const me = app.snapshot.members.find((m) => m.socketId === app.socket.id);
        assert.ok(me, `${app.name}'s newest snapshot does not list its socket ${app.socket.id}: ${JSON.stringify(app.snapshot.members)}`);
        assert.equal(me.connected, true);
        assert.equal(me.role, app === leader ? "leader" : "follower");
        assert.equal(app.snapshot.isPlaying, false, `${app.name}'s newest snapshot still plays after pause`);
      }

      // The follower's chart followed: ticks before and after each drop, and
      // every position is the play anchor's (no seek happened).
      const ticks = follower.of("scroll_tick").map((e) => e.arg);
      assert.ok(ticks.length > 300, `only ${ticks.length} ticks in ~11 s of play`);
      for (const t of ticks) {
        assert.ok(Math.abs(t.positionMs - (t.serverTimestamp - startsAt)) < 1, `tick ${JSON.stringify(t)} off the anchor (startsAt ${startsAt})`);
      }
      const lastTick = ticks.at(-1).serverTimestamp;
      assert.ok(lastTick > t0 + 10_000, "ticks stopped reaching the follower after its reconnect");
      const leaderOutage = ticks.filter((t) => t.serverTimestamp > t0 + 5500 && t.serverTimestamp < t0 + 8000);
      assert.ok(leaderOutage.length > 60, `playback stalled around the leader's reconnect: ${leaderOutage.length} ticks`);
    } finally {
      leader.stop();
      follower.stop();
    }
  });

  test("server: no data race, no panic", { timeout: 20_000 }, async () => {
    closeAllClients();
    const { logs } = await srv.stop();
    assertCleanLogs(logs, "mobile-flow server");
  });
});

// ---------------------------------------------------------------------------
describe("mobile app flow: reconnect after the recovery window (RECOVERY_WINDOW_MS=1000)", () => {
  let srv;
  before(async () => {
    srv = await startServer({ name: "mobile-flow-norecovery", env: { RECOVERY_WINDOW_MS: "1000" } });
  });
  after(async () => {
    closeAllClients();
    await srv?.stop();
  });

  test("the re-join makes the phone a member again under its new id; the old one is gone, counts stay right", { timeout: 20_000 }, async () => {
    const sessionId = `mobile-late-${uid()}`;
    const leader = await new MobileApp(srv.url, sessionId, "leader-phone").start();
    // This phone's reconnect comes only after the server's recovery window.
    const follower = await new MobileApp(srv.url, sessionId, "late-phone", {
      reconnectionDelay: 1800,
      reconnectionDelayMax: 1800,
      randomizationFactor: 0,
    }).start();
    try {
      await emitAck(leader.socket, "play", { sessionId });
      const oldId = follower.socket.id;
      const left = once(leader.socket, "user_left", 5000, (e) => e.socketId === oldId);
      const r = await follower.dropAndReconnect();
      assert.equal(r.recovered, false, "recovered after the recovery window");
      assert.notEqual(r.idAfter, oldId);
      const ul = await left;
      assert.equal(ul.newLeader, leader.socket.id);
      await waitUntil(() => follower.snapshot?.members.some((m) => m.socketId === follower.socket.id), 3000, "the re-joined phone in its snapshot");
      await sleep(200);
      const st = await sessionState(srv, sessionId);
      assert.deepEqual(
        st.members.map((m) => [m.socketId, m.role, m.connected]),
        [[leader.socket.id, "leader", true], [follower.socket.id, "follower", true]],
      );
      assert.equal(follower.snapshot.memberCount, 2);
      assert.equal(follower.snapshot.isPlaying, true, "the re-joined phone does not see playback");
      await waitUntil(() => follower.of("scroll_tick").some((e) => e.at > Date.now() - 200), 2000, "ticks to the re-joined phone");
      const lastStats = leader.of("room_stats").at(-1).arg;
      assert.equal(lastStats.memberCount, 2);
      assert.deepEqual(leader.problems, []);
      assert.deepEqual(follower.problems, []);
    } finally {
      leader.stop();
      follower.stop();
    }
  });

  test("server: no data race, no panic", { timeout: 20_000 }, async () => {
    closeAllClients();
    const { logs } = await srv.stop();
    assertCleanLogs(logs, "mobile-flow (no recovery) server");
  });
});
