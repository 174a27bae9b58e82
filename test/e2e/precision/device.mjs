// One device of the precision harness (cmd/bandsync-precision): the real
// SDK, in its own process, joined to a session through whatever network
// the harness put in front of it. It reports, on stdout as JSON lines,
// what its positionAt() says for instants of the machine's clock, so the
// harness can score it against the server's anchor on that same clock.
//
//   node device.mjs URL SESSION NAME ROLE SAMPLE_MS
//
// stdin: "play DELAY_MS" (the leader starts the song), "seek MS", "claim"
//        (set_role leader), "quit".
// stdout: {"ev":"synced"}, {"ev":"played","state":{...}}, {"ev":"seeked","state":{...}},
//         {"ev":"claimed"}, {"ev":"connection","state":...,"recovered":...},
//         {"ev":"state","id":<socket id>,"role":...,"leader":<leaderSocketId>,"v":<version>,...}
//         after every snapshot the SDK accepts,
//         {"ev":"s","T":<machine epoch ms>,"p":<positionAt>,"e":<sync.errorMs>},
//         {"ev":"sync","sync":{...}} after every clock-sync round, {"ev":"error",...}.
//
// socket.io-client is resolved from test/e2e/node_modules, the SDK from
// sdk/js, exactly as published (lib/sdk.mjs, as in sdk.test.mjs).
import { createInterface } from "node:readline";
import { sdk } from "../lib/sdk.mjs";

const { connect, localNow } = sdk;

const [url, sessionId, name, role, sampleArg] = process.argv.slice(2);
const sampleMs = Number(sampleArg) || 50;
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

// The machine's clock (CLOCK_REALTIME, the server's clock too) against the
// SDK's local clock, to a few microseconds: Date.now() has whole
// milliseconds, so wait for it to tick over and read the local clock then.
// Being descheduled between the two reads can only make the local reading
// late, so the largest of three tries is the right one. (This is the
// harness's ruler, not the SDK's: a device on its own has no such clock.)
function machineMinusLocal() {
  let best = -Infinity;
  for (let i = 0; i < 3; i++) {
    const d0 = Date.now();
    let d;
    while ((d = Date.now()) === d0);
    best = Math.max(best, d - localNow());
  }
  return best;
}

// BANDSYNC_TICK_INTERVAL_MS: the scroll_tick rate the device asks for
// (unset: every tick), to measure what ticks are worth to the clock.
const tickEnv = process.env.BANDSYNC_TICK_INTERVAL_MS;
const c = connect(url, { reconnectionDelayMax: 1000, tickIntervalMs: tickEnv ? Number(tickEnv) : null });
c.on("error", (err) => out({ ev: "error", code: err.code, message: err.message }));
c.on("sync", (s) => out({ ev: "sync", sync: s }));
c.on("connection", (s) => out({ ev: "connection", state: s.state, recovered: s.recovered }));
// What this device believes about the session, for the network-fault tests
// (internal/netfault): who leads, at which version, where the song is.
c.on("state", (st) =>
  out({
    ev: "state",
    id: c.socket.id ?? null,
    role: c.role,
    leader: st.leaderSocketId ?? null,
    v: st.version,
    playing: Boolean(st.isPlaying),
    pos: st.positionMs,
    ts: st.serverTimestamp,
    startsAt: st.startsAt ?? null,
  }),
);
await c.join(sessionId, { displayName: name, role });
while (!c.sync.synced) await new Promise((r) => setTimeout(r, 20));
out({ ev: "synced", sync: c.sync });

let offset = machineMinusLocal();
setInterval(() => {
  offset = machineMinusLocal();
}, 1000);

// Sample on a grid of the machine's clock, so every device reports the very
// same instants and they can be compared pairwise.
let lastT = 0;
setInterval(() => {
  if (!c.state?.isPlaying) return;
  const T = Math.floor((localNow() + offset) / sampleMs) * sampleMs;
  if (T <= lastT) return;
  lastT = T;
  const e = c.sync.errorMs;
  out({ ev: "s", T, p: c.positionAt(T - offset), e: Number.isFinite(e) ? e : -1 });
}, Math.max(5, sampleMs / 5));

for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === "play") {
    try {
      const state = await c.play({ delayMs: Number(arg) || 0 });
      out({ ev: "played", state });
    } catch (err) {
      out({ ev: "error", code: err.code, message: err.message });
    }
  } else if (cmd === "seek") {
    try {
      const state = await c.seek(Number(arg) || 0);
      out({ ev: "seeked", state });
    } catch (err) {
      out({ ev: "error", code: err.code, message: err.message });
    }
  } else if (cmd === "claim") {
    try {
      await c.claimLeadership();
      out({ ev: "claimed" });
    } catch (err) {
      out({ ev: "refused", code: err.code, message: err.message });
    }
  } else if (cmd === "quit") {
    break;
  }
}
out({ ev: "bye", sync: c.sync });
c.close();
process.exit(0);
