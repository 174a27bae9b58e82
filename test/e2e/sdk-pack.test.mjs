// The SDK as people install it: `npm pack` of sdk/js, unpacked into a fresh
// project's node_modules the way `npm install` lays it out. The README's
// quick-start example, taken from the packed README, must run against a
// real server in Node and in Chromium (through an import map, as an app
// without a bundler would load it), and the package's type declarations
// must declare exactly what the module exports.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, mkdirSync, readFileSync, writeFileSync, symlinkSync, existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { startServer, repoRoot } from "./lib/server.mjs";

const sdkSrc = path.join(repoRoot, "sdk", "js");
const CHROMIUM = process.env.BANDSYNC_CHROMIUM || "/usr/bin/chromium";

describe("@bandsync/sdk as packed by npm", () => {
  let dir; // the consumer project
  let pkgDir; // node_modules/@bandsync/sdk
  let files;
  let srv;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "bandsync-sdk-pack-"));
    const out = execFileSync("npm", ["pack", "--json", "--pack-destination", dir], { cwd: sdkSrc, encoding: "utf8" });
    const [packed] = JSON.parse(out);
    files = packed.files.map((f) => f.path).sort();
    pkgDir = path.join(dir, "node_modules", "@bandsync", "sdk");
    mkdirSync(pkgDir, { recursive: true });
    execFileSync("tar", ["-xzf", path.join(dir, packed.filename), "-C", pkgDir, "--strip-components=1"]);
    // The peer dependency, as the app would have installed it: this suite's
    // own pinned socket.io-client (no network needed).
    symlinkSync(path.join(repoRoot, "test", "e2e", "node_modules", "socket.io-client"), path.join(dir, "node_modules", "socket.io-client"));
    writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "band-app", private: true, type: "module" }));
    srv = await startServer({ name: "sdk-pack" });
  });

  after(async () => {
    await srv?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("the package holds the module, its types, the README and nothing else", () => {
    assert.deepEqual(files, ["README.md", "bandsync.d.ts", "bandsync.js", "package.json"]);
    const pkg = JSON.parse(readFileSync(path.join(pkgDir, "package.json"), "utf8"));
    assert.equal(pkg.type, "module");
    assert.equal(pkg.exports["."].types, "./bandsync.d.ts");
    assert.equal(pkg.exports["."].import, "./bandsync.js");
    assert.ok(pkg.peerDependencies["socket.io-client"], "socket.io-client must be a peer dependency");
    assert.ok(!pkg.private, "a private package cannot be published");
  });

  test("the type declarations declare every export and nothing the module lacks", async () => {
    const mod = await import(path.join(pkgDir, "bandsync.js"));
    const dts = readFileSync(path.join(pkgDir, "bandsync.d.ts"), "utf8");
    const declared = new Set(
      [...dts.matchAll(/^export\s+(?:declare\s+)?(?:const|function|class|let)\s+([A-Za-z_$][\w$]*)/gm)].map((m) => m[1]),
    );
    if (/^export\s+default\b|^declare const _default/m.test(dts)) declared.add("default");
    const runtime = new Set(Object.keys(mod));
    assert.deepEqual([...runtime].filter((n) => !declared.has(n)).sort(), [], "exported but not declared in bandsync.d.ts");
    assert.deepEqual([...declared].filter((n) => !runtime.has(n)).sort(), [], "declared in bandsync.d.ts but not exported");
    const pkg = JSON.parse(readFileSync(path.join(pkgDir, "package.json"), "utf8"));
    assert.equal(mod.VERSION, pkg.version, "VERSION in bandsync.js differs from package.json's version");
  });

  // The README's quick start, with its placeholders filled in: the URL is the
  // test server's, and render/flashMetronome/... record what they were given.
  function readmeExample() {
    const readme = readFileSync(path.join(pkgDir, "README.md"), "utf8");
    const m = /## Quick start[\s\S]*?```js\n([\s\S]*?)```/.exec(readme);
    assert.ok(m, "the packed README has no ```js block under ## Quick start");
    assert.match(m[1], /from "@bandsync\/sdk"/);
    return m[1].replace(/"https:\/\/bandsync\.example\.org"/, "globalThis.SERVER_URL");
  }
  const prelude = `
    globalThis.seen = { frames: 0, beats: 0, messages: 0, connection: [] };
    globalThis.render = () => { seen.frames++; };
    globalThis.flashMetronome = () => { seen.beats++; };
    globalThis.showMessage = () => { seen.messages++; };
    globalThis.showConnection = (s) => { seen.connection.push(s); };
  `;
  const epilogue = `
    const until = Date.now() + 8000;
    while ((seen.beats < 2 || band.state?.tempo !== 96 || !band.state?.isPlaying) && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 50));
    }
    globalThis.result = { tempo: band.state?.tempo, playing: band.state?.isPlaying, leader: band.isLeader, ...seen };
    band.close();
  `;

  test("the README example runs in Node", async () => {
    const file = path.join(dir, "example.mjs");
    writeFileSync(
      file,
      `globalThis.SERVER_URL = ${JSON.stringify(srv.url)};
       globalThis.requestAnimationFrame = (f) => setTimeout(() => f(performance.now()), 16);
       ${prelude}
       ${readmeExample()}
       ${epilogue}
       console.log(JSON.stringify(result));
       process.exit(0);`,
    );
    const { code, stdout, stderr } = await run(process.execPath, [file], dir, 20_000);
    assert.equal(code, 0, `node example.mjs failed:\n${stderr}`);
    const r = JSON.parse(stdout.trim().split("\n").pop());
    assert.equal(r.tempo, 96, `the example's setTempo(96) did not take: ${stdout}`);
    assert.equal(r.playing, true, "the example's countIn did not start playback");
    assert.equal(r.leader, true);
    assert.ok(r.frames > 10 && r.beats >= 2, `frames ${r.frames}, beats ${r.beats}`);
  });

  test("the README example runs in Chromium from the packed files", { skip: !existsSync(CHROMIUM) && !process.env.CI }, async () => {
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
    });
    try {
      // The server's CSP (script-src 'self') rightly refuses inline scripts;
      // the test's inline page is the app's own code, so it bypasses it.
      const page = await (await browser.newContext({ bypassCSP: true })).newPage();
      const errors = [];
      page.on("pageerror", (e) => errors.push(e.message));
      page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
      const origin = srv.url;
      // The document comes from the server itself (a fulfilled route would
      // count as a public page, which Chromium's local-network checks keep
      // off a loopback server), then gets the example's HTML; the packed
      // files are served at /pack-test/ on the same origin.
      await page.route(`${origin}/pack-test/*`, (route) => {
        const name = path.basename(new URL(route.request().url()).pathname);
        route.fulfill({ contentType: "text/javascript", body: readFileSync(path.join(pkgDir, name)) });
      });
      await page.goto(`${origin}/health`);
      await page.setContent(`<!doctype html><script type="importmap">
          {"imports": {"@bandsync/sdk": "/pack-test/bandsync.js", "socket.io-client": "/vendor/socket.io.esm.min.js"}}
          </script><script type="module">
          globalThis.SERVER_URL = ${JSON.stringify(origin)};
          ${prelude}
          ${readmeExample()}
          ${epilogue}
          </script>`);
      const r = await page
        .waitForFunction(() => globalThis.result, null, { timeout: 15_000 })
        .then((h) => h.jsonValue())
        .catch(async (err) => {
          throw new Error(`${err.message}; page errors: ${JSON.stringify(errors)}; seen: ${JSON.stringify(await page.evaluate(() => globalThis.seen))}`);
        });
      assert.deepEqual(errors, []);
      assert.equal(r.tempo, 96);
      assert.equal(r.playing, true);
      assert.ok(r.frames > 10 && r.beats >= 2, `frames ${r.frames}, beats ${r.beats}`);
    } finally {
      await browser.close();
    }
  });
});

function run(cmd, args, cwd, timeoutMs) {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
    p.on("close", (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}
