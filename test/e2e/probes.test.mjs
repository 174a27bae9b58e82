// The operator's view of the binary: `-version` prints and exits, the
// container HEALTHCHECK mode (`-healthcheck`) tells a ready server from a
// missing one, and the probes answer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { buildServer, startServer, freePort, httpGet } from "./lib/server.mjs";

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
