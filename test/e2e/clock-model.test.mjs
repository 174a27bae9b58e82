// The SDK's clock model on simulated networks and clocks (no server): the
// cases a band meets over a rehearsal that a 60 s run cannot show — a
// device whose crystal drifts, a jittery link over ten minutes, a clock
// that is set while the band plays — with the truth known exactly.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { sdk } from "./lib/sdk.mjs";

const { ClockModel, SlewedClock } = sdk;

// A small deterministic PRNG (mulberry32) and normal draws from it.
function rng(seed) {
  let a = seed >>> 0;
  const u = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = (mean, sd) => mean + sd * Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
  return { u, normal };
}

/**
 * Simulates a device: local time L, server time S(L) = L + theta(L), with
 * theta(L) = theta0 + driftPpm*1e-6*L (+ step after stepAt). Every
 * `everyMs` an exchange goes out; ticks arrive `tickHz` a second. One-way
 * delays are drawn by up() / down(). Yields after every event.
 */
function* simulate({ durationMs, everyMs = 250, tickHz = 60, theta0 = 1800, driftPpm = 0, up, down, stepAt = Infinity, stepMs = 0 }) {
  const theta = (L) => theta0 + driftPpm * 1e-6 * L + (L >= stepAt ? stepMs : 0);
  let nextEx = 0;
  let nextTick = 0;
  let lastTickArrival = -Infinity; // ticks share one ordered stream: none overtakes another
  for (let L = 0; L < durationMs; ) {
    L = Math.min(nextEx, nextTick);
    if (L === nextEx) {
      const t0 = L;
      const t1 = t0 + theta(t0) + up();
      const t2 = t1 + 0.05;
      const t3 = t2 - theta(t0) + down();
      nextEx += everyMs;
      yield { kind: "exchange", L: t3, x: { t0, t1, t2, t3 }, theta: theta(t3) };
    } else {
      const ts = L + theta(L);
      nextTick += 1000 / tickHz;
      lastTickArrival = Math.max(lastTickArrival, L + down());
      yield { kind: "tick", L: lastTickArrival, ts, theta: theta(L) };
    }
  }
}

function run(opts, modelOpts = {}) {
  const m = new ClockModel(modelOpts);
  const errs = [];
  let n = 0;
  for (const ev of simulate(opts)) {
    if (ev.kind === "exchange") {
      m.addExchange(ev.x);
      if (++n % 8 === 0) m.fitDrift();
    } else {
      m.addLower(ev.ts - ev.L, ev.L);
    }
    const e = m.estimate(ev.L);
    if (e) errs.push({ L: ev.L, err: e.offset - (opts.stepAt <= ev.L ? ev.theta : ev.theta), errorMs: e.errorMs });
  }
  return { m, errs };
}

const p99 = (xs) => [...xs].sort((a, b) => a - b)[Math.ceil(0.99 * xs.length) - 1];

describe("ClockModel", () => {
  test("N(50,30) ms each way, head-of-line blocked, 10 minutes: within 1.5 ms, no growth, no invented drift", () => {
    const r = rng(1);
    const oneWay = () => Math.max(0, r.normal(50, 30));
    const { m, errs } = run({ durationMs: 600_000, up: oneWay, down: oneWay });
    const late = errs.filter((e) => e.L > 60_000);
    const first = late.filter((e) => e.L < 240_000).map((e) => Math.abs(e.err));
    const last = late.filter((e) => e.L > 420_000).map((e) => Math.abs(e.err));
    assert.ok(p99(first) < 1.5, `p99 error ${p99(first)} ms in minutes 1-4`);
    assert.ok(p99(last) < 1.5, `p99 error ${p99(last)} ms in minutes 7-10: it grew`);
    // The failure this replaces: noise read as -500 ppm of drift.
    assert.ok(Math.abs(m.drift * 1e6) < 10, `drift ${m.drift * 1e6} ppm invented from noise`);
    // errorMs is honest: it covers the error.
    const uncovered = late.filter((e) => Math.abs(e.err) > e.errorMs + 0.05).length;
    assert.ok(uncovered / late.length < 0.01, `errorMs below the error in ${uncovered} of ${late.length}`);
  });

  test("a crystal 40 ppm fast is tracked over a long baseline, bounded, without losing the offset", () => {
    const r = rng(2);
    const oneWay = () => Math.max(0, r.normal(3, 1));
    const { m, errs } = run({ durationMs: 600_000, driftPpm: 40, up: oneWay, down: oneWay });
    assert.ok(Math.abs(m.drift * 1e6 - 40) < 5, `drift estimate ${m.drift * 1e6} ppm, true 40`);
    const late = errs.filter((e) => e.L > 120_000).map((e) => Math.abs(e.err));
    assert.ok(p99(late) < 1, `p99 error ${p99(late)} ms with 40 ppm of drift`);
  });

  test("a drift fit that finds nothing does not loosen the evidence (no jump a minute into the song)", () => {
    const r = rng(6);
    const m = new ClockModel();
    // Five lucky seconds, then a minute of a congested link.
    for (let t = 0; t < 5000; t += 250) m.addExchange({ t0: t, t1: t + 0.1, t2: t + 0.15, t3: t + 0.25 });
    for (let t = 5000; t < 70_000; t += 1000) {
      const up = 5 + Math.abs(r.normal(20, 10));
      const down = 5 + Math.abs(r.normal(20, 10));
      m.addExchange({ t0: t, t1: t + up, t2: t + up + 0.05, t3: t + up + 0.05 + down });
    }
    const before = m.estimate(70_000);
    m.fitDrift();
    const after = m.estimate(70_000);
    assert.equal(m.drift, 0);
    assert.ok(Math.abs(after.offset - before.offset) < 0.2, `the fit moved the offset ${before.offset} -> ${after.offset}`);
    assert.ok(after.errorMs - before.errorMs < 0.2, `the fit loosened errorMs ${before.errorMs} -> ${after.errorMs}`);
  });

  test("a device back after 11 minutes offline: its old evidence has expired, the new is taken", () => {
    const m = new ClockModel();
    for (let t = 0; t < 10_000; t += 500) m.addExchange({ t0: t, t1: t + 1800 + 1, t2: t + 1800 + 1.05, t3: t + 2.05 });
    const back = 11 * 60_000;
    assert.equal(m.estimate(back), null, "evidence older than the window still used");
    m.addExchange({ t0: back, t1: back + 1800 + 1, t2: back + 1800 + 1.05, t3: back + 2.05 });
    const e = m.estimate(back + 3);
    assert.ok(e && Math.abs(e.offset - 1800) < 1.1, JSON.stringify(e));
  });

  test("drift is bounded by what crystals do, whatever the data say", () => {
    const r = rng(3);
    const oneWay = () => Math.max(0, r.normal(3, 1));
    const { m } = run({ durationMs: 300_000, driftPpm: 2000, up: oneWay, down: oneWay });
    assert.ok(Math.abs(m.drift * 1e6) <= 100, `drift ${m.drift * 1e6} ppm beyond the 100 ppm bound`);
  });

  test("asymmetric delay is unobservable: the estimate is off by half the difference, and errorMs says so", () => {
    const r = rng(4);
    const { errs } = run({ durationMs: 60_000, up: () => r.normal(10, 1), down: () => r.normal(60, 1) });
    const last = errs[errs.length - 1];
    assert.ok(Math.abs(last.err + 25) < 2, `error ${last.err} ms, want about -25 (half of 10 - 60)`);
    assert.ok(last.errorMs >= Math.abs(last.err), `errorMs ${last.errorMs} does not cover ${last.err}`);
  });

  test("a clock that is set (a 2 s step) restarts the model instead of averaging across the step", () => {
    const r = rng(5);
    const oneWay = () => Math.max(0, r.normal(3, 1));
    const { m, errs } = run({ durationMs: 60_000, up: oneWay, down: oneWay, stepAt: 30_000, stepMs: 2000 });
    assert.ok(m.steps >= 1, "the step was not noticed");
    const after = errs.filter((e) => e.L > 40_000).map((e) => Math.abs(e.err));
    assert.ok(p99(after) < 1, `p99 error ${p99(after)} ms after the step`);
  });
});

describe("SlewedClock", () => {
  test("a correction is slewed at the set rate: continuous and monotonic, and complete after |step| / rate", () => {
    const c = new SlewedClock({ rate: 0.01, stepMs: 250 });
    c.retarget(0, 100, 0);
    c.retarget(1000, 130, 0); // the estimate moves 30 ms
    let prev = c.toServer(1000);
    assert.ok(Math.abs(prev - (1000 + 100)) < 1e-9, "the mapping jumped at the retarget");
    for (let L = 1001; L <= 5000; L++) {
      const s = c.toServer(L);
      const step = s - prev;
      assert.ok(step >= 0.99 - 1e-9 && step <= 1.01 + 1e-9, `server time advanced ${step} ms in 1 ms at ${L}`);
      prev = s;
    }
    assert.ok(Math.abs(c.offsetAt(4000) - 130) < 1e-9, "not converged 3 s after a 30 ms correction at 1%");
    assert.ok(Math.abs(c.toLocal(c.toServer(2500)) - 2500) < 1e-6, "toLocal does not invert toServer");
  });

  test("large corrections, and any while not playing, are stepped", () => {
    const c = new SlewedClock({ rate: 0.01, stepMs: 250 });
    c.retarget(0, 0, 0);
    c.retarget(10, 1800, 0);
    assert.equal(c.offsetAt(10), 1800);
    c.retarget(20, 1805, 0, false);
    assert.equal(c.offsetAt(20), 1805);
  });
});
