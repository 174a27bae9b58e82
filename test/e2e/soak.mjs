// The soak: many official socket.io-client@4 devices in many bands for a
// long time, leaders seeking, and reconnect churn (transports cut under
// the clients, which come back with connection-state recovery). What it
// shows is flatness: the server's RSS and goroutines at the end are where
// they were after warm-up, every cut client recovered as itself, and every
// follower ends at its leader's state.
//
//   node soak.mjs [--clients 300] [--members 6] [--minutes 10]
//                 [--churn-per-s 1] [--seek-ms 1000] [--warmup-s 150]
//
// `make soak` runs it against a fresh server build (no -race: the race
// detector's own memory would be what is measured). It exits non-zero
// when a check fails. Not part of `make test` (10 minutes).
import { readFileSync } from "node:fs";
import { connect, emitAck, sleep, closeAllClients } from "./lib/client.mjs";
import { startServer, stopAllServers, goroutines } from "./lib/server.mjs";

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const CLIENTS = arg("clients", 300);
const MEMBERS = arg("members", 6);
const MINUTES = arg("minutes", 10);
const CHURN_PER_S = arg("churn-per-s", 1);
const SEEK_MS = arg("seek-ms", 1000);
// Until the recovery window (2 minutes) has filled with the records of
// cut sockets, RSS rises as it should; flatness is judged after it.
const WARMUP_S = arg("warmup-s", 150);

function rssMB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
  return Number(m[1]) / 1024;
}

const srv = await startServer({
  env: { LOG_LEVEL: "warn" },
  name: "soak",
});
const bands = Math.ceil(CLIENTS / MEMBERS);
const devices = []; // { socket, band, leader, sid }
const sessionOf = (b) => `soak-${b}`;
console.log(`soak: ${CLIENTS} clients in ${bands} bands for ${MINUTES} min, ${CHURN_PER_S} cut/s, a seek per band every ${SEEK_MS} ms; server pid ${srv.proc.pid}`);

for (let b = 0; b < bands; b++) {
  for (let m = 0; m < MEMBERS && devices.length < CLIENTS; m++) {
    const socket = await connect(srv.url, { reconnectionDelay: 200, reconnectionDelayMax: 1000 });
    const leader = m === 0;
    const ack = await emitAck(socket, "join_session", {
      sessionId: sessionOf(b), displayName: `d${b}-${m}`, role: leader ? "leader" : "follower",
    });
    if (!ack.ok) throw new Error(`join ${sessionOf(b)}: ${JSON.stringify(ack)}`);
    const d = { socket, band: b, leader, sid: socket.id, cuts: 0, recovered: 0, fresh: 0 };
    // What the device's screen shows: the last snapshot of its band.
    socket.on("snapshot", (snap) => {
      if (snap?.sessionId === sessionOf(b)) d.snap = snap;
    });
    socket.on("connect", () => {
      if (socket.recovered) d.recovered++;
      else {
        // What the app does after a fresh connect: join again.
        d.fresh++;
        socket.emit("join_session", { sessionId: sessionOf(b), displayName: `d${b}-${m}`, role: leader ? "leader" : "follower" }, () => {});
      }
    });
    devices.push(d);
  }
  if (b === 0) {
    const ack = await emitAck(devices[0].socket, "play", { sessionId: sessionOf(0) });
    if (!ack.ok) throw new Error(`play: ${JSON.stringify(ack)}`);
  } else {
    await emitAck(devices[devices.length - MEMBERS].socket, "play", { sessionId: sessionOf(b) });
  }
}

const leaders = devices.filter((d) => d.leader);
let seeks = 0, seekErrors = 0;
const refusals = {};
const seekTimer = setInterval(() => {
  for (const l of leaders) {
    if (!l.socket.connected) continue;
    seeks++;
    l.socket.timeout(5000).emit("seek", { sessionId: sessionOf(l.band), positionMs: Math.floor(Math.random() * 200_000) }, (err, ack) => {
      if (err || !ack?.ok) {
        seekErrors++;
        const why = err ? err.message : ack?.error?.code ?? JSON.stringify(ack);
        refusals[why] = (refusals[why] ?? 0) + 1;
      }
    });
  }
}, SEEK_MS);

// Churn: cut a random device's transport under it (as a dropped Wi-Fi
// link would); the client reconnects by itself and presents its pid.
let cuts = 0;
const churnTimer = setInterval(() => {
  for (let i = 0; i < CHURN_PER_S; i++) {
    const d = devices[Math.floor(Math.random() * devices.length)];
    if (!d.socket.connected) continue;
    d.cuts++;
    cuts++;
    d.socket.io.engine.close();
  }
}, 1000);

const samples = [];
const sample = async (t) => {
  const s = { t, rssMB: rssMB(srv.proc.pid), goroutines: await goroutines(srv) };
  samples.push(s);
  console.log(`t=${String(t).padStart(4)} s  RSS ${s.rssMB.toFixed(1)} MB  goroutines ${s.goroutines}  cuts ${cuts}  seeks ${seeks} (${seekErrors} unanswered: ${JSON.stringify(refusals)})`);
};
const start = Date.now();
await sample(0);
while (Date.now() - start < MINUTES * 60_000) {
  await sleep(30_000);
  await sample(Math.round((Date.now() - start) / 1000));
}
clearInterval(churnTimer);
clearInterval(seekTimer);
await sleep(3000); // the last cut clients come back, the last seeks land

// The last word: every leader pauses and seeks to a position of its own;
// every device, cut or not along the way, must show exactly that.
const target = (band) => 100_000 + band * 1000;
await Promise.all(leaders.map(async (l) => {
  await emitAck(l.socket, "pause", { sessionId: sessionOf(l.band) }, 10_000);
  await emitAck(l.socket, "seek", { sessionId: sessionOf(l.band), positionMs: target(l.band) }, 10_000);
}));
await sleep(3000);

const failures = [];
const down = devices.filter((d) => !d.socket.connected);
if (down.length) failures.push(`${down.length} devices not connected at the end`);
const cutTotal = devices.reduce((n, d) => n + d.cuts, 0);
const recovered = devices.reduce((n, d) => n + d.recovered, 0);
const fresh = devices.reduce((n, d) => n + d.fresh, 0);
if (recovered !== cutTotal || fresh > 0) failures.push(`${recovered} recoveries and ${fresh} fresh connects for ${cutTotal} cuts`);
const astray = devices.filter((d) => d.snap?.isPlaying !== false || Math.abs((d.snap?.positionMs ?? -1) - target(d.band)) > 0.5);
if (astray.length) {
  const d = astray[0];
  failures.push(`${astray.length} devices do not show their band's final state (e.g. band ${d.band}: ${JSON.stringify({ isPlaying: d.snap?.isPlaying, positionMs: d.snap?.positionMs })}, want paused at ${target(d.band)})`);
}
let warmAt = samples.findIndex((x) => x.t >= WARMUP_S);
if (warmAt < 0) warmAt = samples.length - 1;
const warm = samples[warmAt];
const end = samples[samples.length - 1];
const rssValues = samples.slice(warmAt).map((s) => s.rssMB);
const gValues = samples.slice(warmAt).map((s) => s.goroutines);
console.log(`\nafter warm-up (t=${warm.t} s) to the end (t=${end.t} s): RSS ${Math.min(...rssValues).toFixed(1)}-${Math.max(...rssValues).toFixed(1)} MB, goroutines ${Math.min(...gValues)}-${Math.max(...gValues)}; ${recovered}/${cutTotal} cuts recovered as the same socket, ${seeks} seeks (${seekErrors} unanswered: ${JSON.stringify(refusals)})`);
if (end.rssMB > warm.rssMB * 1.25 + 8) failures.push(`RSS grew from ${warm.rssMB.toFixed(1)} to ${end.rssMB.toFixed(1)} MB`);
if (end.goroutines > warm.goroutines + 10) failures.push(`goroutines grew from ${warm.goroutines} to ${end.goroutines}`);
closeAllClients();
await stopAllServers();
if (failures.length) {
  console.error(`SOAK FAILED:\n  ${failures.join("\n  ")}`);
  process.exit(1);
}
console.log("soak: flat");
