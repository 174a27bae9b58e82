// The operator's view of the binary: `-version` prints and exits, the
// container HEALTHCHECK mode (`-healthcheck`) tells a ready server from a
// missing one, and the probes answer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { buildServer, startServer, freePort, httpGet } from "./lib/server.mjs";
import { rawConnect, sleep, waitUntil } from "./lib/client.mjs";

const run = (bin, args, env = {}) =>
  spawnSync(bin, args, { env: { ...process.env, ...env }, encoding: "utf8", timeout: 10_000 });

test("-version prints the version and exits 0 without starting a server", async () => {
  const bin = await buildServer();
  const r = run(bin, ["-version"], { PORT: "1" }); // a port it could not bind: it must not try
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^bandsync \S+ \(commit \S+, built \S+, go[\d.]+ \w+\/\w+\)\n$/);
  const bad = run(bin, ["serve"]);
  assert.equal(bad.status, 2, "an unexpected argument must be refused");
  assert.match(bad.stderr, /unexpected arguments/);
});

test("-healthcheck exits 0 for a ready server on PORT and 1 when none answers", async () => {
  const bin = await buildServer();
  const srv = await startServer({ name: "probes" });
  try {
    for (const path of ["/livez", "/readyz"]) {
      const r = await httpGet(`${srv.url}${path}`);
      assert.equal(r.status, 200, `${path}: ${r.body}`);
    }
    const health = JSON.parse((await httpGet(`${srv.url}/health`)).body);
    const version = run(bin, ["-version"]).stdout.split(" ")[1];
    assert.equal(health.version, version, "/health and -version disagree");

    const ok = run(bin, ["-healthcheck"], { PORT: String(srv.port), HOST: "" });
    assert.equal(ok.status, 0, ok.stderr);
    const none = run(bin, ["-healthcheck"], { PORT: String(await freePort()) });
    assert.equal(none.status, 1);
    assert.match(none.stderr, /not ready/);
  } finally {
    await srv.stop();
  }
});

test("/readyz answers 503 from SIGTERM on while the drain runs; /livez stays 200", { timeout: 60_000 }, async () => {
  const TIMEOUT = 3000;
  const srv = await startServer({
    name: "probes-drain",
    env: {
      SHUTDOWN_TIMEOUT_MS: String(TIMEOUT),
      HTTP_RATE_LIMIT_MAX_REQUESTS: "100000",
      RATE_LIMIT_MAX_REQUESTS: "1000000",
      SOCKET_WRITE_QUEUE: "65536",
      SOCKET_PING_INTERVAL: "60000",
      SOCKET_PING_TIMEOUT: "60000",
    },
  });
  // A phone that stopped reading holds the drain open: its backlog of
  // snapshots cannot be flushed, so the drain runs to SHUTDOWN_TIMEOUT_MS.
  const frozen = await rawConnect(srv.url, { perMessageDeflate: false });
  const sessionId = "probes-drain";
  frozen.emit("join_session", { sessionId, displayName: "frozen" });
  await frozen.waitForEvent("snapshot", { timeoutMs: 3000 });
  // A 2 KB snapshot, then thousands of idempotent re-joins, each answered
  // with that snapshot, queue up behind the socket it no longer reads.
  frozen.emit("update_message", { sessionId, message: "🎸".repeat(500) });
  await frozen.waitForEvent("snapshot", { timeoutMs: 3000, where: (s) => s?.message?.length > 0 });
  frozen._socket.pause();
  const inBefore = (await httpGet(`${srv.url}/metrics`)).json().messages.in;
  const N = 5000;
  for (let i = 0; i < N; i++) frozen.emit("join_session", { sessionId });
  await waitUntil(async () => (await httpGet(`${srv.url}/metrics`)).json().messages.in >= inBefore + N, 15_000, "the frozen client's events processed", 50);

  const stopping = srv.stop("SIGTERM", { killAfterMs: TIMEOUT + 10_000 });
  const seen = [];
  const until = Date.now() + TIMEOUT;
  while (Date.now() < until) {
    const [ready, live] = await Promise.all([
      httpGet(`${srv.url}/readyz`, { timeoutMs: 500 }).catch(() => null),
      httpGet(`${srv.url}/livez`, { timeoutMs: 500 }).catch(() => null),
    ]);
    if (!ready || !live) break; // the listener is closed: the drain is over
    seen.push({ ready: ready.status, live: live.status, body: ready.body });
    await sleep(20);
  }
  frozen.terminate();
  await stopping;
  // The first polls can reach the server before its signal handler has
  // run (the signal is asynchronous); from the first 503 on, readiness
  // must never come back.
  const first = seen.findIndex((s) => s.ready === 503);
  const after = first < 0 ? [] : seen.slice(first);
  const draining = after.filter((s) => s.ready === 503);
  assert.ok(draining.length >= 3, `only ${draining.length} 503s from /readyz during a ${TIMEOUT} ms drain: ${JSON.stringify(seen.slice(0, 5))}`);
  assert.ok(first <= 5, `/readyz still answered 200 ${first} polls after SIGTERM`);
  assert.ok(after.every((s) => s.ready === 503), `/readyz answered 200 again during the drain: ${JSON.stringify(after.filter((s) => s.ready !== 503).slice(0, 3))}`);
  assert.match(draining[0].body, /"reason":"draining/);
  assert.ok(seen.every((s) => s.live === 200), "/livez failed during the drain: the orchestrator would kill a pod that is shutting down cleanly");
});
