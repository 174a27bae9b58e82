// The abuse suite's figures (issue 15): one socket floods the server for
// 10 s while three other bands play, and the server must hold: RSS growth
// under 64 MB, no more CPU than with no flood, and a new band admitted at
// once. The other bands' scroll_tick gaps are printed with the figures. Run against a build without -race (the figures
// measure the server, not the race detector); ABUSE_BIN runs another
// build, e.g. main's, for the before/after table in docs/security.md.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Worker } from "node:worker_threads";
import { readFileSync } from "node:fs";
import { startServer, assertCleanLogs, plainServer } from "./lib/server.mjs";
import { connect, emitAck, closeAllClients, sleep, once } from "./lib/client.mjs";

const FLOOD_MS = 10_000;
const T = { timeout: 60_000 };
const MB = 1 << 20;

const plainBinary = () => process.env.ABUSE_BIN || plainServer();

// The server's resident set and CPU time, read from /proc (Linux).
const rss = async (srv) => {
  const status = readFileSync(`/proc/${srv.proc.pid}/status`, "utf8");
  return Number(status.match(/^VmRSS:\s+(\d+) kB/m)[1]) * 1024;
};
const cpuSeconds = (srv) => {
  const f = readFileSync(`/proc/${srv.proc.pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in USER_HZ
};

function flood(port, kind, connect) {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL("./lib/flood.mjs", import.meta.url), { workerData: { port, kind, ms: FLOOD_MS, connect } });
    w.once("message", (m) => { resolve(m); w.terminate(); });
    w.once("error", reject);
  });
}

describe("abuse: one socket flooding for 10 s", () => {
  let srv;
  // The control run's figures: on a shared machine the other bands' ticks
  // are late by the machine's own noise, and the server spends CPU on
  // them; a flood is judged by what it adds.
  let controlCores = 0;
  const bands = [];
  before(async () => {
    srv = await startServer({ name: "abuse-flood", bin: await plainBinary() });
    for (let b = 0; b < 3; b++) {
      const id = `abuse-band-${b}-${Date.now()}`;
      const leader = await connect(srv.url);
      const member = await connect(srv.url);
      await emitAck(leader, "join_session", { sessionId: id });
      await emitAck(member, "join_session", { sessionId: id });
      await emitAck(leader, "play", { sessionId: id });
      const ticks = [];
      member.on("scroll_tick", () => ticks.push(performance.now()));
      bands.push({ ticks });
    }
    await sleep(500);
  });
  after(async () => {
    closeAllClients();
    const { logs } = await srv.stop();
    assertCleanLogs(logs);
  });

  for (const [kind, afterConnect] of [["none", false], ["ping", true], ["ping", false], ["namespace", true], ["namespace", false]]) {
    const name = kind === "none" ? "control: no flood" : `${kind} flood ${afterConnect ? "after" : "before"} CONNECT, not reading`;
    test(name, T, async () => {
      const base = await rss(srv);
      let peak = base;
      const cpu0 = cpuSeconds(srv);
      const start = performance.now();
      const sampling = setInterval(async () => { peak = Math.max(peak, await rss(srv).catch(() => 0)); }, 250);
      const result = flood(srv.port, kind, afterConnect);
      // A new band, from another client, halfway through.
      await sleep(FLOOD_MS / 2);
      const t0 = performance.now();
      const newcomer = await connect(srv.url);
      const joined = await emitAck(newcomer, "join_session", { sessionId: `abuse-new-${kind}-${Date.now()}` });
      const admitMs = performance.now() - t0;
      newcomer.close();
      const { bytes, closedEarly } = await result;
      clearInterval(sampling);
      peak = Math.max(peak, await rss(srv));
      const end = performance.now();
      const cores = (cpuSeconds(srv) - cpu0) / ((end - start) / 1000);
      let maxGap = 0;
      const gaps = [];
      for (const { ticks } of bands) {
        const during = ticks.filter((t) => t >= start && t <= end);
        for (let i = 1; i < during.length; i++) gaps.push(during[i] - during[i - 1]);
      }
      for (const g of gaps) maxGap = Math.max(maxGap, g);
      gaps.sort((a, b) => a - b);
      const p99 = gaps[Math.floor(gaps.length * 0.99)] ?? Infinity;
      const fig = { kind, afterConnect, sentMB: +(bytes / MB).toFixed(1), closedEarly, rssBaseMB: +(base / MB).toFixed(1),
        rssGrowthMB: +((peak - base) / MB).toFixed(1), tickGapP99Ms: +p99.toFixed(1), tickGapMaxMs: +maxGap.toFixed(1), serverCores: +cores.toFixed(2), admitMs: Math.round(admitMs) };
      console.log(`# figures ${JSON.stringify(fig)}`);
      assert.equal(joined.ok, true, `a new band was refused during the flood: ${JSON.stringify(joined)}`);
      assert.ok(admitMs < 3000, `a new band took ${admitMs.toFixed(0)} ms to join during the flood`);
      assert.ok(peak - base < 64 * MB, `RSS grew ${((peak - base) / MB).toFixed(1)} MB during the flood`);
      assert.ok(gaps.length > 0, "no scroll_tick reached the other bands during the flood");
      if (kind === "none") controlCores = cores;
      // What a flood costs the other bands is the server's CPU: 0.15 core
      // above the control at most (main spent 0.17-0.37 core here, 1.5
      // with a faster flooder). Their tick gaps are printed with the
      // figures but not asserted: on this shared 2-core machine the gaps
      // swing between 19 and 230 ms (p99) with the server at 0.05 core,
      // the control's own included, so they measure the machine.
      assert.ok(cores < controlCores + 0.15, `the server spent ${cores.toFixed(2)} cores during the flood (control ${controlCores.toFixed(2)})`);
      await sleep(500);
    });
  }

  test("49 sockets recovering at once with old offsets", T, async () => {
    const id = `abuse-recover-${Date.now()}`;
    const leader = await connect(srv.url);
    await emitAck(leader, "join_session", { sessionId: id });
    const members = [];
    for (let i = 0; i < 49; i++) {
      const m = await connect(srv.url, { reconnectionDelay: 8000, reconnectionDelayMax: 8000, randomizationFactor: 0 });
      await emitAck(m, "join_session", { sessionId: id });
      members.push(m);
    }
    const drops = members.map((m) => { const d = once(m, "disconnect", 3000); m.io.engine.close(); return d; });
    await Promise.all(drops);
    const ups = members.map((m) => once(m, "connect", 30_000));
    // ~5 s of a busy session while they are away: 400 snapshots of ~1 KB.
    const text = "verse chorus bridge ".repeat(22);
    for (let i = 0; i < 400; i++) {
      await emitAck(leader, "update_message", { sessionId: id, message: `${i} ${text}` });
    }
    const base = await rss(srv);
    let peak = base;
    const sampling = setInterval(async () => { peak = Math.max(peak, await rss(srv).catch(() => 0)); }, 50);
    await Promise.all(ups);
    await sleep(2000);
    clearInterval(sampling);
    peak = Math.max(peak, await rss(srv));
    const recovered = members.filter((m) => m.recovered && m.connected).length;
    console.log(`# figures ${JSON.stringify({ kind: "recovery49", recovered, rssBaseMB: +(base / MB).toFixed(1), rssGrowthMB: +((peak - base) / MB).toFixed(1) })}`);
    assert.ok(peak - base < 64 * MB, `RSS grew ${((peak - base) / MB).toFixed(1)} MB while 49 sockets recovered`);
    assert.equal(recovered, 49, "every recovering socket resumed and stayed connected");
    for (const m of members) m.close();
    leader.close();
  });
});
