// The dashboard's list of sessions names every band's session id, all a
// stranger needs to join one: with ADMIN_TOKEN set, a browser sees it only
// with the token, given once in the address and then kept out of it.
// Screenshot: test/e2e/artifacts/stage-dashboard-no-token.png.
import { describe, test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { launchChromium, openDevice } from "./lib/browser.mjs";
import { startServer, assertCleanLogs, artifactsDir } from "./lib/server.mjs";
import { connect, closeAllClients } from "./lib/client.mjs";

describe("the dashboard with an admin token", () => {
  let browser;
  let contexts = [];
  let problems = [];

  before(async () => {
    browser = await launchChromium();
    mkdirSync(artifactsDir, { recursive: true });
  });

  afterEach(async () => {
    for (const c of contexts) await c.close();
    contexts = [];
    const seen = problems;
    problems = [];
    assert.deepEqual(seen, [], "no console errors, page errors or failed requests");
  });

  after(async () => {
    closeAllClients();
    await browser?.close();
  });

  test("with ADMIN_TOKEN the dashboard lists sessions only for the deployer, and drops the token from the address bar", { timeout: 60_000 }, async () => {
    const token = "deployer-token-7f3a9c21";
    const guarded = await startServer({ name: "browser-admin", env: { ADMIN_TOKEN: token, METRICS_INTERVAL: "1000" } });
    try {
      const sessionId = `admin-${Math.random().toString(36).slice(2, 8)}`;
      const member = await connect(guarded.url);
      await new Promise((r) => member.emit("join_session", { sessionId, displayName: "Bass" }, r));
      const row = `tr[data-session="${sessionId}"]`;
      // A stranger on the dashboard: told why, shown no band.
      const seen = [];
      const stranger = await openDevice(browser, { kind: "desktop", label: "stranger", url: `${guarded.url}/dashboard`, contexts, problems: seen });
      await stranger.waitForFunction(() => /ADMIN_TOKEN/.test(document.querySelector('#session-rows tr[data-error="true"]')?.textContent ?? ""), null, { timeout: 5000 });
      await stranger.screenshot({ path: path.join(artifactsDir, "stage-dashboard-no-token.png"), fullPage: true });
      assert.equal(await stranger.$(row), null, "a session was listed without the token");
      assert.ok(seen.every((p) => /401 .*\/sessions$|status of 401/.test(p)), `only the refused list failed: ${seen}`);
      const deployer = await openDevice(browser, { kind: "desktop", label: "deployer", url: `${guarded.url}/dashboard#token=${token}`, contexts, problems });
      await deployer.waitForSelector(row, { timeout: 15_000 });
      assert.doesNotMatch(deployer.url(), /token/, "the token stayed in the address bar");
      await deployer.reload();
      await deployer.waitForSelector(row, { timeout: 15_000 });
      member.close();
    } finally {
      // The pages poll the server: close them before it goes away.
      for (const c of contexts) await c.close();
      contexts = [];
      const { logs } = await guarded.stop();
      assertCleanLogs(logs, "server 'browser-admin'");
    }
  });
});
