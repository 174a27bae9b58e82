// Smoke test of a running multi-instance stack (deploy/compose, driven by
// scripts/stack-test.sh): a band session through the load balancer, spread
// over the instances; then one instance is killed and its clients must
// recover on the others with their socket ids, and the band keeps playing.
//
//   LB_URL=http://127.0.0.1:8080 KILL_CMD='docker-compose ... kill bandsync-2' \
//     DRAIN_CMD='docker-compose ... stop bandsync-1' node stack-smoke.mjs
//
// With DRAIN_CMD, a second instance is then stopped gracefully (SIGTERM, the
// step of a rolling upgrade): its clients too must be recovered elsewhere.
//
// Not a *.test.mjs: it needs the stack, so the e2e suite does not run it.
import assert from "node:assert/strict";
import { execSync } from "node:child_process";
import { connect, emitAck, once, waitUntil, closeAllClients } from "./lib/client.mjs";

const url = process.env.LB_URL;
const kill = process.env.KILL_CMD;
assert.ok(url && kill, "set LB_URL and KILL_CMD");
const N = Number(process.env.CLIENTS ?? 6);
const log = (...a) => console.log(">>> stack-smoke:", ...a);

async function getJSON(path) {
  const res = await fetch(url + path);
  return { status: res.status, body: await res.json().catch(() => null) };
}

const sid = `smoke-${Date.now().toString(36)}`;
// Every instance must be up and on Redis before the band joins.
const seen = new Set();
await waitUntil(async () => {
  const h = await getJSON("/health").catch(() => null);
  if (h?.status === 200 && h.body.redis?.mode === "redis") seen.add(h.body.instanceId);
  return seen.size >= 3;
}, 60_000, "three instances answering /health through the balancer in redis mode", 200);
log(`instances: ${[...seen].join(", ")}`);

// The balancer is round robin, so N consecutive connections land on every
// instance in turn.
const clients = [];
for (let i = 0; i < N; i++) clients.push(await connect(url, { reconnectionDelayMax: 1000 }, 10_000));
const ids = clients.map((c) => c.id);
const versions = new Map(clients.map((c) => [c, 0]));
const tempos = new Map(clients.map((c) => [c, 0]));
for (const c of clients) {
  c.on("snapshot", (s) => {
    versions.set(c, Math.max(versions.get(c), s.version ?? 0));
    if (typeof s.tempo === "number") tempos.set(c, s.tempo);
  });
}
for (const [i, c] of clients.entries()) {
  const r = await emitAck(c, "join_session", { sessionId: sid, displayName: `player-${i}` }, 5000);
  assert.equal(r.ok, true, `join_session: ${JSON.stringify(r)}`);
}
const lead = clients[0];
assert.equal((await emitAck(lead, "play", { sessionId: sid }, 5000)).ok, true);
const t1 = await emitAck(lead, "set_tempo", { sessionId: sid, tempo: 132 }, 5000);
assert.equal(t1.ok, true, `set_tempo: ${JSON.stringify(t1)}`);
await waitUntil(() => clients.every((c) => versions.get(c) >= t1.state.version), 10_000, "the tempo change on every client");
log(`${N} clients playing at 132 bpm in ${sid}`);

// Stops one instance with `cmd`; the clients that were on it are the ones
// that drop, and each must come back recovered: same socket id.
async function moveOff(cmd, what) {
  const dropped = new Set();
  const back = new Map();
  const onDrop = new Map();
  for (const c of clients) {
    const f = () => {
      dropped.add(c);
      back.set(c, once(c, "connect", 30_000));
    };
    onDrop.set(c, f);
    c.on("disconnect", f);
  }
  log(`${what}: ${cmd}`);
  execSync(cmd, { stdio: "inherit", timeout: 60_000 });
  await waitUntil(() => dropped.size > 0, 20_000, `the clients of the instance (${what}) to notice`);
  // Give the rest of its clients a moment to notice too.
  await new Promise((r) => setTimeout(r, 1000));
  log(`${dropped.size} of ${N} clients dropped; waiting for them to come back`);
  assert.ok(dropped.size < N, "every client dropped: the instances are not independent");
  await Promise.all(back.values());
  for (const c of dropped) {
    assert.equal(c.recovered, true, `client ${ids[clients.indexOf(c)]} reconnected but was not recovered`);
    assert.equal(c.id, ids[clients.indexOf(c)], "a recovered socket keeps its id");
  }
  for (const [c, f] of onDrop) c.off("disconnect", f);
  log(`all ${dropped.size} recovered on the other instances with their ids`);
}

// The band carries on: the leader (wherever it is now) changes the tempo and
// every client, moved or not, follows.
async function tempoEverywhere(tempo) {
  const t = await emitAck(lead, "set_tempo", { sessionId: sid, tempo }, 10_000);
  assert.equal(t.ok, true, `set_tempo ${tempo}: ${JSON.stringify(t)}`);
  await waitUntil(() => clients.every((c) => versions.get(c) >= t.state.version), 10_000, `tempo ${tempo} on every client`);
  assert.ok(clients.every((c) => tempos.get(c) === tempo), `a client missed the change to ${tempo}`);
}

await moveOff(kill, "killing (SIGKILL)");
await tempoEverywhere(96);
if (process.env.DRAIN_CMD) {
  await moveOff(process.env.DRAIN_CMD, "stopping (SIGTERM, drain)");
  await tempoEverywhere(104);
}

const st = await waitUntil(async () => {
  const r = await getJSON(`/sessions/${sid}`);
  return r.status === 200 && r.body.memberCount === N && r.body.members.every((m) => m.connected) && r.body;
}, 15_000, `all ${N} members connected in /sessions/${sid}`);
assert.equal(st.leaderSocketId, ids[0], "the leader lost its role");
log(`ok: ${N} members connected, leader kept, tempo ${st.tempo}`);
closeAllClients();
process.exit(0);
