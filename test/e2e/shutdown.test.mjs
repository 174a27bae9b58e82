// Graceful shutdown, end to end: SIGTERM while a band is playing.
//
// What the lead decided (issue #3): on SIGTERM, /health answers 503
// {status:"draining"}; clients see `disconnect` with reason "transport close"
// (not "io server disconnect", so socket.io-client reconnects on its own, to
// another instance behind the load balancer); the process exits 0 within
// SHUTDOWN_TIMEOUT_MS.
//
// The drain of well-behaved clients takes a few milliseconds, too short to
// observe reliably. The second test therefore adds a client that stops
// reading (a phone whose app froze) with megabytes queued to it: the drain
// then lasts until SHUTDOWN_TIMEOUT_MS, long enough to watch /health, to see
// new upgrades refused, and to let a load-balancer stand-in (a TCP proxy)
// move the band to a second instance where the apps reconnect by themselves.
import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startServer, httpGet, assertCleanLogs } from "./lib/server.mjs";
import { connect, once, emitAck, collect, rawConnect, rawUpgrade, closeAllClients, closeAllRaw, sleep, waitUntil } from "./lib/client.mjs";

const uid = () => Math.random().toString(36).slice(2, 10);
// The -race runtime sleeps 1 s at exit by default (GORACE atexit_sleep_ms);
// that second is the race detector's, not the server's shutdown.
const GORACE = [process.env.GORACE, "atexit_sleep_ms=0"].filter(Boolean).join(" ");
// Process teardown after the server's own deadline (exit, pipes closing, Node
// noticing): allowed on top of SHUTDOWN_TIMEOUT_MS.
const EXIT_SLACK_MS = 500;

after(() => {
  closeAllClients();
  closeAllRaw();
});

/** The app's connection: WebSocket only, reconnects by itself, joins on every connect. */
async function app(url, sessionId) {
  const s = await connect(url, { reconnectionDelay: 100, reconnectionDelayMax: 300 });
  s.joins = [];
  const join = () => {
    s.joins.push(s.id);
    s.emit("join_session", { sessionId });
  };
  s.on("connect", join);
  join();
  await once(s, "snapshot", 3000);
  s.disconnects = [];
  s.on("disconnect", (reason) => s.disconnects.push({ reason, at: Date.now() }));
  return s;
}

/** Polls GET /health until stopped: {startedAt, status, body} or {startedAt, error}. */
function healthPoller(url, everyMs = 25) {
  const seen = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const startedAt = Date.now();
      try {
        const r = await httpGet(`${url}/health`, { timeoutMs: 1000 });
        let body = null;
        try {
          body = r.json();
        } catch {
          // recorded as null
        }
        seen.push({ startedAt, status: r.status, body });
      } catch (err) {
        seen.push({ startedAt, error: err.code ?? err.message });
      }
      await sleep(everyMs);
    }
  })();
  return {
    seen,
    async stop() {
      running = false;
      await done;
    },
  };
}

/** A TCP proxy standing in for a load balancer: forwards to one backend port, switchable. */
async function tcpProxy(targetPort) {
  let target = targetPort;
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(target, "127.0.0.1");
    sockets.add(client);
    sockets.add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    setTarget(port) {
      target = port;
    },
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

/** /health answers after the drain began must never claim a healthy server. */
function checkHealthDuringDrain(seen, drainSeenAt) {
  const after = seen.filter((h) => h.startedAt >= drainSeenAt);
  const healthyAfter = after.filter((h) => h.status === 200);
  assert.deepEqual(
    healthyAfter.map((h) => `${h.startedAt - drainSeenAt} ms: ${h.status} ${h.body?.status}`),
    [],
    "/health answered 200 after clients had already been disconnected by the shutdown",
  );
  const draining = seen.filter((h) => h.status === 503);
  for (const h of draining) {
    assert.equal(h.body?.status, "draining", `503 /health body: ${JSON.stringify(h.body)}`);
    for (const k of ["uptime", "connections", "sessions", "redis", "instanceId", "version"]) {
      assert.ok(k in h.body, `503 /health body has no ${k}`);
    }
  }
  for (const h of seen) {
    assert.ok(h.status === undefined || h.status === 200 || h.status === 503, `/health answered ${h.status} during shutdown`);
  }
  return draining.length;
}

// ---------------------------------------------------------------------------
describe("SIGTERM during play (well-behaved clients)", () => {
  test("clients see 'transport close', /health never says healthy after that, exit 0 within SHUTDOWN_TIMEOUT_MS", { timeout: 30_000 }, async (t) => {
    const TIMEOUT = 5000;
    const srv = await startServer({
      name: "shutdown-simple",
      env: { SHUTDOWN_TIMEOUT_MS: String(TIMEOUT), GORACE, HTTP_RATE_LIMIT_MAX_REQUESTS: "100000" },
    });
    const sessionId = `bye-${uid()}`;
    const leader = await app(srv.url, sessionId);
    const follower = await app(srv.url, sessionId);
    assert.equal((await emitAck(leader, "play", { sessionId }))?.ok, true);
    const ticks = collect(follower, "scroll_tick");
    await waitUntil(() => ticks.length > 10, 2000, "ticks while playing");

    const health = healthPoller(srv.url, 5);
    await sleep(50);
    const killedAt = Date.now();
    const exit = await srv.stop("SIGTERM", { killAfterMs: TIMEOUT + 10_000 });
    const exitMs = Date.now() - killedAt;
    await waitUntil(() => leader.disconnects.length && follower.disconnects.length, 3000, "both clients' disconnect");
    await health.stop();

    assert.equal(exit.signal, null, `the server was killed by ${exit.signal} (did not exit by itself)`);
    assert.equal(exit.code, 0, `exit code ${exit.code}`);
    assert.ok(exitMs <= TIMEOUT + EXIT_SLACK_MS, `exited ${exitMs} ms after SIGTERM; SHUTDOWN_TIMEOUT_MS is ${TIMEOUT}`);
    for (const [name, s] of [["leader", leader], ["follower", follower]]) {
      assert.equal(s.disconnects[0].reason, "transport close", `${name}'s disconnect reason (socket.io-client reconnects by itself only after a transport close)`);
    }
    const firstDrop = Math.min(leader.disconnects[0].at, follower.disconnects[0].at);
    const n503 = checkHealthDuringDrain(health.seen, firstDrop);
    t.diagnostic(`/health 503 draining answers observed during the (short) drain: ${n503}`);
    // The band kept playing until the shutdown: ticks right up to it.
    const lastTick = ticks.at(-1).serverTimestamp;
    assert.ok(lastTick >= killedAt - 200, `the last tick (${killedAt - lastTick} ms before SIGTERM) is too early: playback stopped before the shutdown`);
    assertCleanLogs(exit.logs, "shutdown-simple server");
    assert.match(exit.logs, /shutting down/);
    leader.close();
    follower.close();
  });
});

// ---------------------------------------------------------------------------
describe("SIGTERM during play with a stalled client: observable drain, reconnect to a second instance", () => {
  test("503 draining throughout the drain, upgrades refused, exit 0 by SHUTDOWN_TIMEOUT_MS, apps move to instance B by themselves", { timeout: 45_000 }, async () => {
    const TIMEOUT = 3000;
    const env = {
      SHUTDOWN_TIMEOUT_MS: String(TIMEOUT),
      GORACE,
      HTTP_RATE_LIMIT_MAX_REQUESTS: "100000",
      RATE_LIMIT_MAX_REQUESTS: "1000000", // the stalled client's backlog is built from its own events
      SOCKET_WRITE_QUEUE: "65536", // keep the stalled client instead of dropping it for its backlog
      SOCKET_PING_INTERVAL: "60000", // ... or for its missing pongs
      SOCKET_PING_TIMEOUT: "60000",
    };
    const a = await startServer({ name: "shutdown-a", env });
    const b = await startServer({ name: "shutdown-b", env: { GORACE } });
    const lb = await tcpProxy(a.port);
    try {
      const sessionId = `move-${uid()}`;
      const leader = await app(lb.url, sessionId);
      const follower = await app(lb.url, sessionId);
      assert.equal((await emitAck(leader, "play", { sessionId }))?.ok, true);
      assert.equal((await emitAck(leader, "update_message", { sessionId, message: "🎸".repeat(500) }))?.ok, true);

      // A frozen phone: joined, then stops reading; ~10 MB of snapshots (its
      // own idempotent re-joins, 2 KB each) queue up behind its full socket.
      const frozen = await rawConnect(a.url, { perMessageDeflate: false });
      frozen.emit("join_session", { sessionId });
      await frozen.waitForEvent("snapshot", { timeoutMs: 3000 });
      frozen._socket.pause();
      const inBefore = (await httpGet(`${a.url}/metrics`)).json().messages.in;
      const N = 5000;
      for (let i = 0; i < N; i++) frozen.emit("join_session", { sessionId });
      await waitUntil(async () => (await httpGet(`${a.url}/metrics`)).json().messages.in >= inBefore + N, 15_000, "the frozen client's events processed", 50);

      const health = healthPoller(a.url, 25);
      let drainingSeenAt = null;
      const switched = (async () => {
        // The load balancer takes A out of rotation when /health says 503.
        await waitUntil(() => health.seen.some((h) => h.status === 503), TIMEOUT + 5000, "a 503 from /health", 5).catch(() => null);
        drainingSeenAt = Date.now();
        lb.setTarget(b.port);
      })();

      const killedAt = Date.now();
      const stopping = a.stop("SIGTERM", { killAfterMs: TIMEOUT + 10_000 });
      await waitUntil(() => leader.disconnects.length && follower.disconnects.length, 3000, "both apps' disconnect");
      const firstDrop = Math.min(leader.disconnects[0].at, follower.disconnects[0].at);

      // While A drains (the frozen client holds it open): 503 and no new upgrades.
      await switched;
      assert.ok(drainingSeenAt !== null && drainingSeenAt - killedAt < TIMEOUT, "no 503 draining from /health during the drain");
      const up = await rawUpgrade(a.url);
      const upgradedDuringDrain = up.status;

      const exit = await stopping;
      const exitMs = Date.now() - killedAt;
      await health.stop();

      assert.notEqual(upgradedDuringDrain, 101, "a new WebSocket upgrade was accepted while draining");
      assert.equal(exit.signal, null, `the server was killed by ${exit.signal} (did not exit by itself)`);
      assert.equal(exit.code, 0, `exit code ${exit.code}:\n${exit.logs.split("\n").filter((l) => /panic|fatal|goroutine|\.go:/.test(l)).slice(0, 20).join("\n")}`);
      assert.ok(exitMs <= TIMEOUT + EXIT_SLACK_MS, `exited ${exitMs} ms after SIGTERM; SHUTDOWN_TIMEOUT_MS is ${TIMEOUT}`);
      assert.ok(exitMs >= TIMEOUT - 200, `exited after ${exitMs} ms: the frozen client did not hold the drain (test setup did not work)`);
      for (const [name, s] of [["leader", leader], ["follower", follower]]) {
        assert.equal(s.disconnects[0].reason, "transport close", `${name}'s disconnect reason`);
      }
      const n503 = checkHealthDuringDrain(health.seen, firstDrop);
      assert.ok(n503 >= 10, `only ${n503} 503 answers during a ${TIMEOUT} ms drain`);
      assertCleanLogs(exit.logs, "shutdown-a server");

      // Both apps reconnected by themselves through the load balancer to B
      // and re-joined; the band is whole there.
      await waitUntil(() => leader.connected && follower.connected && leader.joins.length >= 2 && follower.joins.length >= 2, 10_000, "both apps reconnected to B");
      await waitUntil(async () => {
        const r = await httpGet(`${b.url}/sessions/${sessionId}`);
        return r.status === 200 && r.json().memberCount === 2;
      }, 5000, "the session on B with both apps");
      const st = (await httpGet(`${b.url}/sessions/${sessionId}`)).json();
      assert.deepEqual(st.members.map((m) => m.socketId).sort(), [leader.id, follower.id].sort());
      assert.ok(st.leaderSocketId === leader.id || st.leaderSocketId === follower.id, "no leader on B");
      const bHealth = (await httpGet(`${b.url}/health`)).json();
      assert.equal(bHealth.connections, 2);
      frozen.terminate();
      leader.close();
      follower.close();
    } finally {
      lb.close();
      closeAllClients();
      closeAllRaw();
      await a.stop("SIGKILL");
      const bExit = await b.stop();
      assertCleanLogs(bExit.logs, "shutdown-b server");
    }
  });
});
