// A precision-harness device in headless Chromium: the same SDK file the
// web app loads (/sdk/bandsync.js, served through the device's link), run
// in a page whose every byte goes through that link. Same arguments, stdin
// commands and stdout lines as device.mjs.
//
//   node browser-device.mjs URL SESSION NAME ROLE SAMPLE_MS
import { createInterface } from "node:readline";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const [url, sessionId, name, role, sampleArg] = process.argv.slice(2);
const sampleMs = Number(sampleArg) || 50;
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

const userDataDir = mkdtempSync(path.join(os.tmpdir(), "bandsync-precision-chromium-"));
const ctx = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.BANDSYNC_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = ctx.pages()[0] ?? (await ctx.newPage());
page.on("pageerror", (err) => out({ ev: "error", code: "PAGE_ERROR", message: String(err) }));
await page.exposeFunction("__out", (o) => out(o));
// Any same-origin document will do; the SDK is imported into it.
await page.goto(`${url}/health`);
await page.evaluate(
  async ({ sessionId, name, role, sampleMs }) => {
    const { connect, localNow } = await import("/sdk/bandsync.js");
    const c = connect(location.origin, { reconnectionDelayMax: 1000 });
    window.__c = c;
    c.on("sync", (s) => window.__out({ ev: "sync", sync: s }));
    await c.join(sessionId, { displayName: name, role });
    while (!c.sync.synced) await new Promise((r) => setTimeout(r, 20));
    // The page's ruler, as in device.mjs: machine clock minus the SDK's.
    const machineMinusLocal = () => {
      let best = -Infinity;
      for (let i = 0; i < 3; i++) {
        const d0 = Date.now();
        let d;
        while ((d = Date.now()) === d0);
        best = Math.max(best, d - localNow());
      }
      return best;
    };
    let offset = machineMinusLocal();
    setInterval(() => (offset = machineMinusLocal()), 1000);
    let lastT = 0;
    setInterval(() => {
      if (!c.state?.isPlaying) return;
      const T = Math.floor((localNow() + offset) / sampleMs) * sampleMs;
      if (T <= lastT) return;
      lastT = T;
      const e = c.sync.errorMs;
      window.__out({ ev: "s", T, p: c.positionAt(T - offset), e: Number.isFinite(e) ? e : -1 });
    }, Math.max(5, sampleMs / 5));
  },
  { sessionId, name, role, sampleMs },
);
out({ ev: "synced" });

for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === "play") {
    try {
      const state = await page.evaluate((d) => window.__c.play({ delayMs: d }), Number(arg) || 0);
      out({ ev: "played", state });
    } catch (err) {
      out({ ev: "error", code: "PLAY", message: String(err) });
    }
  } else if (cmd === "quit") {
    break;
  }
}
const sync = await page.evaluate(() => window.__c.sync).catch(() => null);
out({ ev: "bye", sync });
await ctx.close();
rmSync(userDataDir, { recursive: true, force: true });
process.exit(0);
