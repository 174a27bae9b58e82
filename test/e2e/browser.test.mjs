// The web app in a real browser (Debian's Chromium driven by playwright-core):
// two phones join one session, the leader starts with a count-in, and both
// screens must show the same position and beat at the same instant. The
// dashboard must show the server's live metrics. Screenshots of the leader
// view, the follower view and the dashboard (phone-sized viewport) are
// written to test/e2e/artifacts/ for a person to look at.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { launchChromium, openDevice, joinPage, clockSkew } from "./lib/browser.mjs";
import { startServer, httpGet, assertCleanLogs, artifactsDir } from "./lib/server.mjs";
import { sleep } from "./lib/client.mjs";

const percentile = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : NaN;
};
const fmt = (x) => (Number.isFinite(x) ? x.toFixed(3) : String(x));

describe("web app in Chromium", () => {
  let srv;
  let browser;
  const contexts = [];
  const problems = []; // console errors, page errors, failed requests

  before(async () => {
    srv = await startServer({ name: "browser", env: { METRICS_INTERVAL: "1000" } });
    const home = await httpGet(`${srv.url}/`);
    if (home.status !== 200 || !/<title>BandSync<\/title>/.test(home.body)) {
      throw new Error(
        `GET / answered ${home.status} ${home.body.slice(0, 120)}: the web app is not mounted. ` +
          "cmd/bandsync/main.go must set httpapi.Options.Static = web.Handler() (package internal/web).",
      );
    }
    // Each device is its own window (a browser context), as on a band's
    // phones: tabs of one window are in the background but for one, and a
    // background tab draws frames only now and then.
    browser = await launchChromium();
    mkdirSync(artifactsDir, { recursive: true });
  });

  after(async () => {
    for (const c of contexts) await c.close();
    await browser?.close();
    if (srv) {
      const { logs } = await srv.stop();
      assertCleanLogs(logs, "server 'browser'");
    }
  });

  const openPage = (url, label) => openDevice(browser, { kind: "phone", label, url, contexts, problems, failedRequests: true });

  /** What the page shows right now: its readout's data attributes. */
  const readout = (page) =>
    page.evaluate(() => {
      const d = document.getElementById("readout").dataset;
      return {
        pos: Number(d.positionMs),
        beat: Number(d.beat),
        at: Number(d.shownAt),
        playing: d.playing === "true",
        countIn: d.countIn === "true",
        bar: Number(document.getElementById("chart-inner").dataset.bar),
        chord: document.querySelector(".bar.current")?.textContent ?? null,
        flash: document.getElementById("metronome").dataset.flash,
        beatText: document.getElementById("beat-text").textContent,
        readAt: performance.timeOrigin + performance.now(),
      };
    });

  test("two phones: count-in, then the same position and beat on both screens; dashboard live", { timeout: 90_000 }, async () => {
    const sessionId = `browser-${Math.random().toString(36).slice(2, 8)}`;
    const leader = await openPage(`${srv.url}/`, "leader");
    await joinPage(leader, sessionId, "Drums", "leader");
    assert.equal(await leader.getAttribute("body", "data-role"), "leader");
    assert.equal(await leader.isVisible("#leader-controls"), true, "leader sees the transport controls");

    const follower = await openPage(`${srv.url}/?session=${sessionId}`, "follower");
    assert.equal(await follower.inputValue("#session-input"), sessionId, "a shared link fills in the session");
    await joinPage(follower, sessionId, "Keys", "follower");
    assert.equal(await follower.getAttribute("body", "data-role"), "follower");
    assert.equal(await follower.isVisible("#leader-controls"), false, "a follower has no transport controls");
    await leader.waitForFunction(() => document.getElementById("members").textContent === "2 members");

    // Connected, clock synced, quality shown.
    for (const p of [leader, follower]) {
      await p.waitForSelector('#conn[data-state="connected"]');
      await p.waitForFunction(() => document.getElementById("quality").dataset.rttMs !== "", null, { timeout: 8000 });
    }

    // Tempo 100 from the leader's tempo field reaches the follower.
    await leader.fill("#tempo-input", "100");
    await leader.press("#tempo-input", "Enter");
    await leader.locator("#tempo-input").blur();
    await follower.waitForFunction(() => document.getElementById("tempo-display").textContent === "100 BPM");
    await leader.fill("#message-input", "Count-in, then verse");
    await leader.click('#message-form button[type="submit"]');
    await follower.waitForFunction(() => document.getElementById("message-text").textContent === "Count-in, then verse");

    // Let a second sync round land (the SDK re-syncs 2 s after connecting).
    await sleep(2500);
    const [skewL, skewF] = [await clockSkew(leader, 400), await clockSkew(follower, 400)];

    // Count-in: one bar (4 beats of 600 ms) plus a short lead.
    await leader.click("#countin-btn");
    const seen = { leader: new Set(), follower: new Set() };
    const countInSeen = { leader: false, follower: false };
    const samples = [];
    const until = Date.now() + 2400 + 9000; // count-in + 9 s of play
    while (Date.now() < until) {
      const [l, f] = await Promise.all([readout(leader), readout(follower)]);
      if (l.countIn) countInSeen.leader = true;
      if (f.countIn) countInSeen.follower = true;
      // Each page against its own count-in: the two readouts are taken
      // one after the other, so one page may already have started.
      if (l.countIn) assert.equal(l.pos, 0, "the leader's position holds during its count-in");
      if (f.countIn) assert.equal(f.pos, 0, "the follower's position holds during its count-in");
      seen.leader.add(l.flash);
      seen.follower.add(f.flash);
      samples.push({ l, f });
      await sleep(40 + Math.random() * 40);
    }
    assert.ok(countInSeen.leader && countInSeen.follower, `count-in shown: ${JSON.stringify(countInSeen)}`);

    // Screenshots while the band plays (phone viewport), from the top, in
    // the second bar of a line (the chart glides to the next line during a
    // line's last bar).
    await leader.evaluate(() => window.scrollTo(0, 0));
    await follower.waitForFunction(() => Number(document.getElementById("chart-inner").dataset.bar) % 4 === 1, null, { timeout: 10_000 });
    for (const [page, file] of [[leader, "browser-leader.png"], [follower, "browser-follower.png"]]) {
      await page.bringToFront();
      await sleep(150);
      await page.screenshot({ path: path.join(artifactsDir, file) });
    }

    // Agreement at the same instant. While playing, position - shownAt is
    // constant on a page, so after putting both pages' frame times on one
    // clock (the skews above), the difference of (position - time) between
    // the pages is how far apart they are at any common instant.
    // The readouts are live: each page drew its last frame moments before
    // it was read (a page that stopped drawing would trivially "agree").
    for (const who of ["l", "f"]) {
      const age = percentile(samples.map((x) => x[who].readAt - x[who].at), 50);
      assert.ok(age >= 0 && age < 50, `${who === "l" ? "leader" : "follower"}: readout is ${fmt(age)} ms old (median)`);
    }
    const playing = samples.filter(({ l, f }) => l.playing && f.playing && !l.countIn && !f.countIn && l.pos > 100 && f.pos > 100);
    assert.ok(playing.length >= 60, `only ${playing.length} samples while playing`);
    const posDiff = playing.map(({ l, f }) => Math.abs(l.pos - (l.at - skewL) - (f.pos - (f.at - skewF))));
    const rawDiff = playing.map(({ l, f }) => Math.abs(l.pos - l.at - (f.pos - f.at)));
    const beatMs = 60000 / 100;
    const beatDiffMs = playing.map(({ l, f }) => Math.abs((l.beat - (l.at - skewL) / beatMs - (f.beat - (f.at - skewF) / beatMs)) * beatMs));
    const p99 = percentile(posDiff, 99);
    const beatP99 = percentile(beatDiffMs, 99);
    console.log(
      `# browser agreement over ${playing.length} samples: position p50 ${fmt(percentile(posDiff, 50))} p99 ${fmt(p99)} max ${fmt(Math.max(...posDiff))} ms; ` +
        `beat p99 ${fmt(beatP99)} ms; without the clock-skew correction p99 ${fmt(percentile(rawDiff, 99))} ms; skew leader ${fmt(skewL)} follower ${fmt(skewF)} ms`,
    );
    // Tolerance 5 ms. Each page syncs its own clock over a loopback
    // WebSocket from a renderer that is also drawing frames. The error
    // that remains is constant for a page (p50 = p99): half the asymmetry
    // of its best round trips. On a 2-vCPU host also running the
    // race-built server, Node and two renderers, that was 0.3-1.2 ms in
    // most CI runs and 2.2 ms in one. The SDK's 1 ms target is asserted
    // without a browser in sdk.test.mjs. 5 ms still fails a page whose
    // sync is lost or wrong (tens of ms), and is half of what a musician
    // hears as "not together" (~10-20 ms).
    assert.ok(p99 <= 5, `the two screens disagree on the position by ${fmt(p99)} ms at p99 (tolerance 5 ms)`);
    assert.ok(beatP99 <= 5, `the two screens disagree on the beat by ${fmt(beatP99)} ms at p99 (tolerance 5 ms)`);

    // What a musician sees: the chart moved on, both show the same chord
    // when they show the same bar, and the metronome flashed on both.
    const last = playing[playing.length - 1];
    assert.ok(last.f.bar >= 2, `the follower's chart is at bar ${last.f.bar} after ~9 s at 100 BPM`);
    for (const { l, f } of playing) {
      if (l.bar === f.bar) assert.equal(l.chord, f.chord, `bar ${l.bar}: ${l.chord} vs ${f.chord}`);
    }
    assert.ok(seen.leader.size >= 10 && seen.follower.size >= 10, `metronome flashes: ${seen.leader.size} / ${seen.follower.size}`);
    assert.match(last.f.beatText, /^Bar \d+ · Beat [1-4]$/);

    // Pause: both hold the same position.
    await leader.click("#pause-btn");
    // Read each screen in front, once it has drawn the pause: a tab in the
    // background draws no frames, so its readout can be the last frame
    // before the pause (a CI run compared such a frame, 12.6 ms later).
    const pausedReadout = async (page) => {
      await page.bringToFront();
      await page.waitForFunction(() => document.getElementById("readout").dataset.playing === "false");
      return readout(page);
    };
    const lp = await pausedReadout(leader);
    const fp = await pausedReadout(follower);
    await sleep(300);
    assert.equal(lp.pos, fp.pos, "paused: both screens show the same position");
    await sleep(300);
    assert.equal((await readout(follower)).pos, fp.pos, "paused position holds");
    await leader.click("#play-btn"); // play again so the dashboard has traffic

    // The dashboard.
    const dash = await openPage(`${srv.url}/dashboard`, "dashboard");
    await dash.waitForFunction(() => Number(document.querySelector('[data-metric="connections"]').textContent) >= 2, null, { timeout: 8000 });
    await dash.waitForFunction(
      () => [...document.querySelectorAll("canvas[data-chart]")].every((c) => Number(c.dataset.points) > 0),
      null,
      { timeout: 8000 },
    );
    await sleep(2500); // a few more points on the charts
    const sessions = await dash.textContent('[data-metric="sessions-sub"]');
    assert.match(sessions, /1 playing/, `dashboard sessions: ${sessions}`);
    await dash.screenshot({ path: path.join(artifactsDir, "browser-dashboard.png"), fullPage: true });

    assert.deepEqual(problems, [], "no console errors (CSP violations included), page errors or failed requests");
  });
});
