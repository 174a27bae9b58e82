// Abuse and hard-luck clients, against the built server with the official
// socket.io-client@4: what one misbehaving or badly connected device may
// cost, and what the rest of the bands must still get.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startServer, assertCleanLogs, httpGet } from "./lib/server.mjs";
import { connect, once, emitAck, closeAllClients, sleep, waitUntil } from "./lib/client.mjs";

const T = { timeout: 90_000 };

/**
 * A TCP proxy to port that passes the server's bytes to the client at
 * bytesPerSec at most (a phone on a poor link) and the client's unchanged.
 */
function slowLink(port, bytesPerSec) {
  const sockets = new Set();
  const server = net.createServer((down) => {
    const up = net.connect(port, "127.0.0.1");
    sockets.add(down).add(up);
    down.pipe(up);
    up.on("data", (chunk) => {
      down.write(chunk);
      up.pause();
      setTimeout(() => up.resume(), (chunk.length / bytesPerSec) * 1000);
    });
    const end = () => { up.destroy(); down.destroy(); };
    up.on("error", end).on("close", end);
    down.on("error", end).on("close", end);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => { for (const s of sockets) s.destroy(); server.close(); },
  })));
}

describe("abuse", () => {
  let srv;
  before(async () => { srv = await startServer({ name: "abuse" }); });
  after(async () => {
    closeAllClients();
    const { logs } = await srv.stop();
    assertCleanLogs(logs);
  });

  test("a member on a 100 KB/s link who missed 20 s of a busy session recovers, stays connected, and ends with the right state", T, async () => {
    const link = await slowLink(srv.port, 100_000);
    try {
      const id = "abuse-slow-" + Date.now();
      const leader = await connect(srv.url);
      await emitAck(leader, "join_session", { sessionId: id, displayName: "leader" });
      // Reconnects 20 s after the drop, as a phone out of coverage would.
      const member = await connect(link.url, { reconnectionDelay: 21_000, reconnectionDelayMax: 21_000, randomizationFactor: 0 });
      await emitAck(member, "join_session", { sessionId: id, displayName: "slow" });
      let last = null;
      let leaderLast = null;
      leader.on("snapshot", (s) => { if (s.sessionId === id) leaderLast = s; });
      member.on("snapshot", (s) => { if (s.sessionId === id) last = s; });
      const drops = [];
      member.on("disconnect", (reason) => drops.push(reason));

      const down = once(member, "disconnect", 3000);
      member.io.engine.close();
      await down;
      const up = once(member, "connect", 40_000);
      // 20 s of a busy session: 25 changes a second, each a snapshot of ~1 KB.
      const text = "verse chorus bridge ".repeat(22);
      let final = null;
      const start = Date.now();
      for (let i = 0; Date.now() - start < 20_000; i++) {
        const r = i % 2
          ? await emitAck(leader, "set_tempo", { sessionId: id, tempo: 60 + (i % 200) })
          : await emitAck(leader, "update_message", { sessionId: id, message: `${i} ${text}` });
        assert.equal(r.ok, true, JSON.stringify(r));
        final = r.state;
        await sleep(40);
      }
      await up;
      assert.equal(member.recovered, true, "the member must resume as itself within the recovery window");
      await sleep(6000);
      assert.deepEqual(drops, ["forced close"], `the recovered member was dropped again: ${drops.join(", ")}`);
      assert.equal(member.connected, true);
      // Its return is itself a change (connected again): the leader's
      // latest snapshot is the state to end with.
      await waitUntil(() => last && last.version === leaderLast.version, 5000, "the member's state to catch up");
      assert.equal(last.tempo, final.tempo);
      assert.equal(last.message, final.message);
      leader.close();
      member.close();
    } finally {
      link.close();
    }
  });

  test("forged latency and sync reports do not move the metrics, from a member or not", T, async () => {
    const sums = async () => {
      const res = await httpGet(`${srv.url}/metrics?format=prometheus`);
      const sum = (name) => Number((res.body.match(new RegExp(`^${name}_sum (\\S+)$`, "m")) ?? [0, 0])[1]);
      return { latency: sum("bandsync_sync_latency_seconds"), rtt: sum("bandsync_client_rtt_seconds") };
    };
    const before = await sums();
    const stranger = await connect(srv.url);
    const member = await connect(srv.url);
    await emitAck(member, "join_session", { sessionId: "abuse-forged-" + Date.now() });
    for (const c of [stranger, member]) {
      for (let i = 0; i < 40; i++) {
        // A round trip of 29 s claimed by a timestamp the server never sent.
        c.emit("heartbeat_response", { timestamp: Date.now() - 29_000 - i });
        c.emit("sync_quality", { offsetMs: 5000, rttMs: 29_000 });
      }
    }
    await emitAck(member, "clock_sync", { t0: Date.now() }); // the reports above are handled by now
    await emitAck(stranger, "clock_sync", { t0: Date.now() });
    const after = await sums();
    // At most the one sync_quality report a second a member may make.
    assert.ok(after.latency - before.latency < 1, `forged heartbeats added ${(after.latency - before.latency).toFixed(1)} s of sync latency`);
    assert.ok(after.rtt - before.rtt <= 29.001, `forged sync reports added ${(after.rtt - before.rtt).toFixed(1)} s of client RTT`);
    stranger.close();
    member.close();
  });
});
