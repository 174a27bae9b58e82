// End-to-end tests of the JavaScript SDK (sdk/js/bandsync.js) against the
// real server binary: what a band would notice. Do the devices agree on
// where the song is, click the count-in together, start on the bar, and
// keep going through a Wi-Fi drop?
//
// The SDK is imported from sdk/js exactly as published (lib/sdk.mjs).
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { startServer, httpGet, assertCleanLogs, artifactsDir } from "./lib/server.mjs";
import { sleep, waitUntil } from "./lib/client.mjs";
import { Manager } from "socket.io-client";
import { sdk } from "./lib/sdk.mjs";

const { connect, BandSyncError, localNow } = sdk;

const uid = () => Math.random().toString(36).slice(2, 10);
const room = (p) => `sdk-${p}-${uid()}`;
const T = { timeout: 30_000 };

const clients = new Set();
function client(url, opts = {}) {
  const c = connect(url, opts);
  clients.add(c);
  return c;
}
function closeClients() {
  for (const c of clients) c.close();
  clients.clear();
}

/** Resolves with the next `event` on an SDK client satisfying `where`. */
function next(c, event, where = () => true, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      c.off(event, fn);
      reject(new Error(`no '${event}' from the SDK within ${timeoutMs} ms`));
    }, timeoutMs);
    const fn = (...args) => {
      if (!where(...args)) return;
      clearTimeout(timer);
      c.off(event, fn);
      resolve(args[0]);
    };
    c.on(event, fn);
  });
}

const synced = (c, rounds = 1) => waitUntil(() => c.sync.rounds >= rounds, 8000, `clock sync round ${rounds}`);

function percentile(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}
const fmt = (x) => (Number.isFinite(x) ? x.toFixed(3) : String(x));

function saveReport(name, data) {
  try {
    mkdirSync(artifactsDir, { recursive: true });
    writeFileSync(path.join(artifactsDir, name), JSON.stringify(data, null, 2));
  } catch {
    // best effort
  }
}

// ---------------------------------------------------------------------------
// Delay injection.

/**
 * Runs callbacks `delay()` ms after they are queued, in the order queued
 * (a later message never overtakes an earlier one, as on one TCP stream or
 * one busy thread). Records the delays it applied.
 */
function orderedDelay(delay) {
  const queue = [];
  const applied = [];
  let timer = null;
  let lastDue = 0;
  const pump = () => {
    timer = null;
    const now = performance.now();
    while (queue.length && queue[0].due <= now + 0.05) queue.shift().fn();
    if (queue.length) timer = setTimeout(pump, Math.max(0, queue[0].due - performance.now()));
  };
  const run = (fn) => {
    const now = performance.now();
    const due = Math.max(now + delay(), lastDue);
    lastDue = due;
    applied.push(due - now);
    queue.push({ due, fn });
    if (!timer) timer = setTimeout(pump, Math.max(0, queue[0].due - now));
  };
  run.applied = applied;
  return run;
}

const jitter20 = () => 10 + Math.random() * 20; // 20 +/- 10 ms, uniform

/**
 * An `io` for the SDK whose socket.io Manager hands every decoded incoming
 * packet (events, acks, snapshots, ticks) to the application 20 +/- 10 ms
 * late. This is a device that is slow to HANDLE messages (a busy UI thread,
 * a backlog of rendering): the bytes reach the device on time (the
 * WebSocket frame is read and timestamped by the transport as it arrives),
 * but everything the app sees, including clock_sync answers and state
 * updates, comes 10-30 ms late.
 */
function slowHandlingIo(delay) {
  const sched = orderedDelay(delay);
  class SlowHandling extends Manager {
    ondecoded(packet) {
      sched(() => super.ondecoded(packet));
    }
  }
  const ioFn = (url, opts) => new SlowHandling(url, opts).socket("/", opts);
  ioFn.applied = sched.applied;
  return ioFn;
}

/**
 * A TCP proxy on 127.0.0.1 in front of the server. Server-to-client bytes
 * can be delayed (in order) to model a slow downlink, and connections can
 * be cut (a Wi-Fi drop) or refused for a while (out of range).
 */
async function startProxy(targetPort, { downDelay } = {}) {
  const conns = new Set();
  let refuseUntil = 0;
  const sched = downDelay ? orderedDelay(downDelay) : null;
  const server = net.createServer({ noDelay: true }, (down) => {
    if (Date.now() < refuseUntil) {
      down.destroy();
      return;
    }
    const up = net.connect({ port: targetPort, host: "127.0.0.1", noDelay: true });
    const pair = { down, up };
    conns.add(pair);
    const kill = () => {
      down.destroy();
      up.destroy();
      conns.delete(pair);
    };
    down.on("data", (chunk) => up.write(chunk));
    up.on("data", (chunk) => {
      if (sched) sched(() => !down.destroyed && down.write(chunk));
      else down.write(chunk);
    });
    down.on("error", kill);
    up.on("error", kill);
    down.on("close", kill);
    up.on("close", () => (sched ? sched(kill) : kill()));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    applied: sched?.applied,
    /** Cuts every open connection (RST), like a device dropping off Wi-Fi. */
    drop(refuseMs = 0) {
      refuseUntil = Date.now() + refuseMs;
      for (const { down, up } of conns) {
        down.resetAndDestroy?.() ?? down.destroy();
        up.destroy();
      }
      conns.clear();
    },
    close() {
      this.drop();
      return new Promise((r) => server.close(r));
    },
  };
}

// ---------------------------------------------------------------------------
describe("SDK: session control and clock", () => {
  let srv;
  before(async () => {
    srv = await startServer({ name: "sdk", env: { METRICS_INTERVAL: "500" } });
  });
  after(async () => {
    closeClients();
    const { logs } = await srv.stop();
    assertCleanLogs(logs, "server 'sdk'");
  });

  test("leader actions resolve to the new state; a follower's are refused with NOT_LEADER", T, async () => {
    const id = room("actions");
    const alice = client(srv.url);
    const bob = client(srv.url);
    const roles = [];
    alice.on("role", (r) => roles.push(r.role));

    const st = await alice.join(id, { displayName: "Alice" });
    assert.equal(st.sessionId, id);
    assert.equal(alice.role, "leader", "the first member of a session leads");
    await bob.join(id, { displayName: "Bob" });
    assert.equal(bob.role, "follower");
    assert.deepEqual(
      bob.state.members.map((m) => m.displayName),
      ["Alice", "Bob"],
    );

    const bobSees96 = next(bob, "state", (s) => s.tempoBpm === 96);
    const t = await alice.setTempo(96);
    assert.equal(t.tempoBpm, 96, "setTempo resolves with the new state");
    await bobSees96;

    for (const [what, fn] of [
      ["setTempo", () => bob.setTempo(100)],
      ["play", () => bob.play()],
      ["seek", () => bob.seek(1000)],
      ["stop", () => bob.stop()],
    ]) {
      await assert.rejects(fn(), (err) => {
        assert.ok(err instanceof BandSyncError, `${what}: ${err}`);
        assert.equal(err.code, "NOT_LEADER", `${what}: ${err.code} ${err.message}`);
        return true;
      });
    }
    await assert.rejects(alice.setTempo(1000), (err) => err.code === "INVALID_PAYLOAD");
    assert.equal(bob.state.tempoBpm, 96, "refused commands changed nothing");

    const msg = next(bob, "state", (s) => s.message === "Chorus twice, then out");
    assert.equal((await alice.updateMessage("Chorus twice, then out")).message, "Chorus twice, then out");
    await msg;

    const seeked = next(bob, "state", (s) => s.positionMs === 30_000);
    assert.equal((await alice.seek(30_000)).positionMs, 30_000);
    await seeked;
    assert.equal(bob.positionAt(), 30_000, "paused: the follower's position holds where the leader put it");

    const playing = await alice.play();
    assert.equal(playing.isPlaying, true);
    await waitUntil(() => bob.state.isPlaying, 2000, "follower sees play");
    await sleep(300);
    const p = bob.positionAt();
    assert.ok(p > 30_200 && p < 30_600, `follower position 300 ms after play from 30 s: ${p}`);
    await alice.pause();
    await waitUntil(() => !bob.state.isPlaying, 2000, "follower sees pause");
    const held = bob.positionAt();
    await sleep(200);
    assert.equal(bob.positionAt(), held, "paused position holds");
    await alice.stop();
    await waitUntil(() => bob.positionAt() === 0 && bob.beatAt() === 0, 2000, "follower back at 0 after stop");

    // Hand over the lead.
    const bobLeads = next(bob, "role", (r) => r.role === "leader");
    await alice.releaseLeadership();
    await waitUntil(() => bob.state.leaderSocketId === null, 2000, "vacant leadership");
    await bob.claimLeadership();
    await bobLeads;
    assert.equal(bob.isLeader, true);
    await waitUntil(() => alice.role === "follower", 2000, "alice follows");
    assert.deepEqual(roles, ["leader", "follower"]);
    await assert.rejects(alice.play(), (err) => err.code === "NOT_LEADER");
  });

  test("clock sync: at least 8 samples a round, the server's clock to within a millisecond, sync_quality reported", T, async () => {
    const c = client(srv.url);
    const rounds = [];
    c.on("sync", (s) => rounds.push(s));
    await c.join(room("clock"), { displayName: "Clock" });
    // The first round is a burst at connect; the next ones are background
    // exchanges, one a second once the estimate is within 1 ms.
    await waitUntil(() => c.sync.rounds >= 2, 15_000, "clock sync round 2");
    for (const r of rounds) assert.ok(r.samples >= 8, `a round used ${r.samples} samples`);

    // Server and test run on one machine, so the server's clock IS this
    // process's Date.now(): the SDK's idea of server time must match it.
    const diffs = [];
    for (let i = 0; i < 50; i++) {
      const a = c.serverNow();
      const d = Date.now(); // whole ms, truncated: on average 0.5 ms behind
      diffs.push(a - (d + 0.5));
      await sleep(3);
    }
    const med = percentile(diffs, 50);
    assert.ok(Math.abs(med) < 1, `serverNow() - Date.now() median ${fmt(med)} ms (rounds: ${JSON.stringify(rounds)})`);
    const s = c.sync;
    assert.ok(s.synced && s.rttMs >= 0 && s.rttMs < 20 && s.jitterMs >= 0, JSON.stringify(s));
    assert.ok(Math.abs(s.driftPpm) <= 100, `drift ${s.driftPpm} ppm`);
    // On loopback the published uncertainty is tight, and honest: it covers
    // the error measured above.
    assert.ok(s.errorMs > 0 && s.errorMs < 2, `errorMs ${s.errorMs}`);
    assert.ok(Math.abs(med) <= s.errorMs + 0.5, `error ${fmt(med)} ms beyond errorMs ${fmt(s.errorMs)}`);

    // sync_quality reached the server's metrics.
    await waitUntil(
      async () => {
        const m = (await httpGet(`${srv.url}/metrics`)).json();
        return m.clientSync?.reports >= 1;
      },
      5000,
      "clientSync.reports >= 1 in /metrics",
      200,
    );
  });

  test("count-in: every device clicks the same beats on the same instants, then the song starts on beat 0", T, async () => {
    const id = room("countin");
    const lead = client(srv.url);
    const fol = client(srv.url);
    await lead.join(id, { displayName: "Drums" });
    await fol.join(id, { displayName: "Keys" });
    await Promise.all([synced(lead), synced(fol)]);
    await lead.setTempo(150); // 400 ms a beat: a one-bar count-in is 1.6 s

    // The follower also schedules audio 150 ms ahead: its plain listener
    // must still be called on the beat, not with the audio one (issue 13).
    const beats = { lead: [], fol: [], folAudio: [] };
    const offs = [
      lead.onBeat((b) => beats.lead.push({ ...b, firedAt: lead.now() })),
      fol.onBeat((b) => beats.fol.push({ ...b, firedAt: fol.now() })),
      fol.onBeat((b) => beats.folAudio.push({ ...b, firedAt: fol.now() }), { lookaheadMs: 150 }),
    ];
    const st = await lead.countIn({ bars: 1, beatsPerBar: 4 });
    assert.equal(st.isPlaying, true);
    assert.equal(typeof st.startsAt, "number");
    assert.ok(st.startsAt - st.serverTimestamp > 1600, `count-in delay ${st.startsAt - st.serverTimestamp} ms`);
    await waitUntil(() => fol.state.isPlaying, 2000, "follower sees play");
    assert.equal(fol.isCountingIn(), true, "the follower counts in before the start");
    assert.equal(fol.positionAt(), 0, "position holds during the count-in");
    await sleep(st.startsAt - lead.serverNow() + 1700); // count-in + 4 beats
    offs.forEach((off) => off());

    for (const [who, ahead] of [["fol", 0], ["folAudio", 150], ["lead", 0]]) {
      for (const b of beats[who]) {
        const early = b.localTime - ahead - b.firedAt;
        assert.ok(early < 0.1, `${who} beat ${b.beat} was called ${fmt(early)} ms before its instant minus its ${ahead} ms lookahead`);
      }
    }
    for (const who of ["lead", "fol", "folAudio"]) {
      const got = beats[who];
      const ids = got.map((b) => b.beat);
      assert.deepEqual(ids.slice(0, 8), [-4, -3, -2, -1, 0, 1, 2, 3], `${who} beats: ${ids}`);
      assert.deepEqual(
        got.slice(0, 8).map((b) => b.countIn),
        [true, true, true, true, false, false, false, false],
        `${who}: count-in flags`,
      );
      for (const b of got) {
        // A listener with lookahead (audio scheduling) may be called late
        // against its lookahead when play arrived inside it, but never
        // after the beat itself.
        const limit = who === "folAudio" ? 150 : 25;
        assert.ok(b.lateMs > -0.1 && b.lateMs < limit, `${who} beat ${b.beat} fired ${fmt(b.lateMs)} ms from its instant`);
      }
      const zero = got.find((b) => b.beat === 0);
      assert.ok(Math.abs(zero.serverTime - st.startsAt) < 0.5, `${who}: beat 0 at ${zero.serverTime}, startsAt ${st.startsAt}`);
      for (let i = 1; i < 8; i++) {
        const gap = got[i].localTime - got[i - 1].localTime;
        assert.ok(Math.abs(gap - 400) < 0.5, `${who}: beats ${got[i - 1].beat}->${got[i].beat} ${fmt(gap)} ms apart`);
      }
    }
    for (let i = 0; i < 8; i++) {
      const d = beats.lead[i].localTime - beats.fol[i].localTime;
      assert.ok(Math.abs(d) < 1, `beat ${beats.lead[i].beat}: leader and follower instants differ by ${fmt(d)} ms`);
    }
    await lead.stop();
  });

  test("tickIntervalMs: 0 — no scroll_tick reaches the device, and its position still runs with the band's", T, async () => {
    const id = room("noticks");
    const lead = client(srv.url);
    const quiet = client(srv.url, { tickIntervalMs: 0 });
    await lead.join(id, { displayName: "Drums" });
    await quiet.join(id, { displayName: "Keys (no ticks)" });
    await Promise.all([synced(lead), synced(quiet)]);
    const ticks = { lead: 0, quiet: 0 };
    lead.on("tick", () => ticks.lead++);
    quiet.on("tick", () => ticks.quiet++);
    await lead.play();
    await sleep(1500);
    assert.ok(ticks.lead > 30, `the leader, asking for nothing, got ${ticks.lead} ticks in 1.5 s`);
    assert.equal(ticks.quiet, 0, "a device that asked for no ticks got some");
    const T = localNow();
    const d = Math.abs(lead.positionAt(T) - quiet.positionAt(T));
    assert.ok(quiet.positionAt(T) > 1000 && d < 1, `positions ${lead.positionAt(T)} / ${quiet.positionAt(T)}`);
    await lead.stop();
  });

  test("playOnNextBar starts on a bar of the shared grid, far enough ahead for everyone to hear of it", T, async () => {
    const id = room("nextbar");
    const lead = client(srv.url);
    await lead.join(id, { displayName: "Drums" });
    await synced(lead);
    await lead.setTempo(120); // a 4-beat bar is 2000 ms
    for (let i = 0; i < 3; i++) {
      const before = lead.serverNow();
      const st = await lead.playOnNextBar({ beatsPerBar: 4 });
      const lead_ = st.startsAt - before;
      assert.ok(lead_ >= 150 && lead_ <= 2200, `start ${fmt(lead_)} ms after the request`);
      const phaseMs = st.startsAt % 2000;
      const off = Math.min(phaseMs, 2000 - phaseMs);
      assert.ok(off < 5, `startsAt ${st.startsAt} is ${fmt(off)} ms off a bar boundary`);
      await lead.stop();
      await sleep(137);
    }
    await lead.setTempo(40); // a 4-beat bar is 6 s: too long for play.delayMs (5 s max)
    await assert.rejects(lead.playOnNextBar({ beatsPerBar: 4, minLeadMs: 5500 }), (e) => e.code === "QUANTUM_TOO_LONG");
  });
});

// ---------------------------------------------------------------------------
describe("SDK: position agreement (acceptance)", () => {
  let srv;
  let proxy;
  before(async () => {
    srv = await startServer({ name: "sdk-agreement" });
    proxy = await startProxy(srv.port, { downDelay: jitter20 });
  });
  after(async () => {
    closeClients();
    await proxy?.close();
    const { logs } = await srv.stop();
    assertCleanLogs(logs, "server 'sdk-agreement'");
  });

  // Four devices in one session, all in this process so they can be asked
  // about the very same instant T of one clock:
  //   A  leader, plain loopback
  //   B  follower, plain loopback                     -> acceptance: |A-B| p99 <= 1 ms
  //   C  follower that HANDLES every incoming message
  //      20 +/- 10 ms late (slowHandlingIo above)     -> acceptance: |A-C| p99 <= 3 ms
  //   D  follower behind a proxy that delays every server-to-client byte
  //      20 +/- 10 ms (a slow, asymmetric downlink)   -> reported; see below
  // Every ~50 ms for 30 s of play, each computes positionAt(T) for one T.
  //
  // What C means: the SDK never takes "when a message arrived" as "when it
  // happened". Positions come from the server's (position, serverTimestamp)
  // anchors and the synced clock, and clock_sync answers are timestamped when
  // their frame arrives, not when the app gets round to them. A client that
  // set its position from each tick on receipt would be 20 ms behind (the
  // test checks C really does see its ticks that late).
  //
  // What D means: a delay on the downlink only is invisible to any
  // NTP-style exchange (offset and path asymmetry cannot be told apart from
  // round trips alone), so D's clock ends up behind by about half the
  // downlink delay of the samples it trusts. No client can meet 3 ms here.
  // Keeping the lowest-round-trip samples (the median of the best 4 of 12
  // is about the 14-15 ms delay) gives ~7 ms, where taking every sample
  // alike would give half the median delay (~10.5 ms); the test asserts
  // the SDK beats that and reports the figure.
  test("two devices agree on the position within 1 ms (p99, 30 s); within 3 ms with 20 +/- 10 ms handling delay", { timeout: 90_000 }, async () => {
    const id = room("agree");
    const slowIo = slowHandlingIo(jitter20);
    const A = client(srv.url);
    const B = client(srv.url);
    const C = client(srv.url, { io: slowIo });
    const D = client(proxy.url);
    await A.join(id, { displayName: "A (leader)" });
    await Promise.all([B.join(id, { displayName: "B" }), C.join(id, { displayName: "C (slow handling)" }), D.join(id, { displayName: "D (slow downlink)" })]);
    assert.equal(A.role, "leader");
    await Promise.all([A, B, C, D].map((c) => synced(c)));
    const roundsBefore = [A, B, C, D].map((c) => c.sync.rounds);

    // How stale each tick is when the app gets it (a naive client's error).
    const staleness = { B: [], C: [], D: [] };
    for (const [k, c] of [["B", B], ["C", C], ["D", D]]) {
      c.on("tick", (tick) => staleness[k].push(A.serverNow() - tick.serverTimestamp));
    }

    await A.setTempo(100);
    const st = await A.play({ delayMs: 1000 });
    const startsAt = st.startsAt;
    const durationMs = 30_000;
    const diffs = { AB: [], AC: [], AD: [] };
    const beatDiffs = { AB: [] };
    let notPlaying = 0;
    await new Promise((resolve) => {
      const timer = setInterval(() => {
        const T = localNow();
        const serverT = A.toServerTime(T);
        if (serverT < startsAt + 20) return; // sample the song, not the count-in
        if (serverT > startsAt + durationMs) {
          clearInterval(timer);
          resolve();
          return;
        }
        const [a, b, c, d] = [A, B, C, D].map((x) => x.positionAt(T));
        if (![A, B, C, D].every((x) => x.state?.isPlaying)) notPlaying++;
        diffs.AB.push(Math.abs(a - b));
        diffs.AC.push(Math.abs(a - c));
        diffs.AD.push(Math.abs(a - d));
        beatDiffs.AB.push(Math.abs(A.beatAt(T) - B.beatAt(T)));
      }, 50);
    });

    const summary = {};
    for (const [k, xs] of Object.entries(diffs)) {
      summary[k] = { samples: xs.length, p50: percentile(xs, 50), p99: percentile(xs, 99), max: Math.max(...xs) };
    }
    const stale = Object.fromEntries(Object.entries(staleness).map(([k, xs]) => [k, { p50: percentile(xs, 50), p99: percentile(xs, 99) }]));
    const report = {
      durationMs,
      positionAgreementMs: summary,
      tickStalenessAtHandlingMs: stale,
      injectedDelayMs: {
        C_handling: { p50: percentile(slowIo.applied, 50), min: Math.min(...slowIo.applied), max: Math.max(...slowIo.applied) },
        D_downlink: { p50: percentile(proxy.applied, 50), min: Math.min(...proxy.applied), max: Math.max(...proxy.applied) },
      },
      sync: Object.fromEntries([["A", A], ["B", B], ["C", C], ["D", D]].map(([k, c]) => [k, c.sync])),
    };
    saveReport("sdk-position-agreement.json", report);
    console.log(`# position agreement over ${durationMs / 1000} s (ms): ` + Object.entries(summary).map(([k, s]) => `${k} p50 ${fmt(s.p50)} p99 ${fmt(s.p99)} max ${fmt(s.max)} (n=${s.samples})`).join("; "));
    console.log(`# tick staleness when handled (ms): ` + Object.entries(stale).map(([k, s]) => `${k} p50 ${fmt(s.p50)}`).join("; "));
    console.log(`# offsets (ms): ` + Object.entries(report.sync).map(([k, s]) => `${k} ${fmt(s.offsetMs)} rtt ${fmt(s.rttMs)} jitter ${fmt(s.jitterMs)} rounds ${s.rounds}`).join("; "));

    assert.ok(summary.AB.samples >= 500, `only ${summary.AB.samples} samples in 30 s`);
    assert.equal(notPlaying, 0, "a device was not playing during the song");
    // The injections really happened: C and D get their ticks ~20 ms late,
    // B does not (so the comparison below is not between identical clients).
    assert.ok(stale.C.p50 >= 15, `C's ticks are handled only ${fmt(stale.C.p50)} ms after they were sent`);
    assert.ok(stale.D.p50 >= 15, `D's ticks arrive only ${fmt(stale.D.p50)} ms after they were sent`);
    assert.ok(stale.B.p50 < 5, `B's ticks are handled ${fmt(stale.B.p50)} ms after they were sent`);
    // Re-syncs happened during the run (their steps are part of what is measured).
    [A, B, C, D].forEach((c, i) => assert.ok(c.sync.rounds >= roundsBefore[i] + 2, `device ${"ABCD"[i]} re-synced ${c.sync.rounds - roundsBefore[i]} times in 30 s`));

    assert.ok(summary.AB.p99 <= 1, `A and B disagree by ${fmt(summary.AB.p99)} ms at p99 (want <= 1 ms)`);
    assert.ok(percentile(beatDiffs.AB, 99) <= (1 * 100) / 60000, "beats disagree by more than 1 ms worth");
    assert.ok(summary.AC.p99 <= 3, `with slow handling, A and C disagree by ${fmt(summary.AC.p99)} ms at p99 (want <= 3 ms)`);
    const unfiltered = percentile(proxy.applied, 50) / 2;
    assert.ok(
      summary.AD.p99 < unfiltered,
      `with a slow downlink, A and D disagree by ${fmt(summary.AD.p99)} ms at p99, no better than unfiltered sync (${fmt(unfiltered)} ms)`,
    );
  });
});

// ---------------------------------------------------------------------------
describe("SDK: flaky Wi-Fi", () => {
  let srv;
  let proxy;
  before(async () => {
    srv = await startServer({ name: "sdk-wifi", env: { RECOVERY_WINDOW_MS: "1000", LEADER_GRACE_MS: "5000" } });
    proxy = await startProxy(srv.port);
  });
  after(async () => {
    closeClients();
    await proxy?.close();
    const { logs } = await srv.stop();
    assertCleanLogs(logs, "server 'sdk-wifi'");
  });

  test("a short drop: the chart keeps moving, the connection is recovered and the leader still leads", T, async () => {
    const id = room("drop");
    const lead = client(proxy.url);
    const fol = client(srv.url);
    const conn = [];
    lead.on("connection", (c) => conn.push(c.state));
    await lead.join(id, { displayName: "Leader on Wi-Fi" });
    await fol.join(id, { displayName: "Follower" });
    await Promise.all([synced(lead), synced(fol)]);
    await lead.play();
    await waitUntil(() => fol.state.isPlaying, 2000, "follower playing");
    const socketId = lead.socket.id;
    const roundsBefore = lead.sync.rounds;

    proxy.drop(300);
    await waitUntil(() => lead.connectionState === "reconnecting", 3000, "SDK notices the drop");
    // Off the network, the device still knows where the band is.
    const T = localNow();
    assert.equal(lead.state.isPlaying, true, "the last state is kept through the drop");
    assert.ok(Math.abs(lead.positionAt(T) - fol.positionAt(T)) < 1, "position during the drop");
    await assert.rejects(lead.pause(), (e) => e.code === "DISCONNECTED", "commands fail fast while disconnected");

    const back = await next(lead, "connection", (c) => c.state === "connected", 8000);
    assert.equal(back.recovered, true, "reconnected within the recovery window");
    assert.equal(lead.socket.id, socketId, "same socket id after recovery");
    await waitUntil(() => lead.sync.rounds > roundsBefore, 3000, "clock re-synced after the reconnect");
    assert.equal(lead.role, "leader");
    const T2 = localNow();
    assert.ok(Math.abs(lead.positionAt(T2) - fol.positionAt(T2)) < 1, "position after the drop");
    const paused = await lead.pause();
    assert.equal(paused.isPlaying, false, "the leader can still drive the band");
    assert.deepEqual(conn, ["connected", "reconnecting", "connected"]);
  });

  test("a drop past the recovery window: the SDK joins the session again on its own", T, async () => {
    const id = room("long-drop");
    const lead = client(srv.url);
    const fol = client(proxy.url);
    await lead.join(id, { displayName: "Leader" });
    await fol.join(id, { displayName: "Bass on Wi-Fi" });
    await synced(fol);
    await lead.setTempo(90);
    await lead.play();
    await waitUntil(() => fol.state.isPlaying, 2000, "follower playing");
    const oldId = fol.socket.id;

    proxy.drop(1600); // out of range for longer than RECOVERY_WINDOW_MS
    await waitUntil(() => !lead.state.members.some((m) => m.socketId === oldId), 5000, "server dropped the old membership");
    const rejoined = await next(fol, "rejoined", () => true, 10_000);
    assert.equal(rejoined.recovered, false);
    assert.notEqual(fol.socket.id, oldId);
    await waitUntil(() => lead.state.members.some((m) => m.socketId === fol.socket.id && m.displayName === "Bass on Wi-Fi"), 3000, "leader sees the bass back");
    assert.equal(fol.role, "follower");
    assert.equal(fol.state.tempoBpm, 90);
    await synced(fol, 2);
    const T = localNow();
    assert.ok(Math.abs(lead.positionAt(T) - fol.positionAt(T)) < 1, "follower back in step");
  });
});
