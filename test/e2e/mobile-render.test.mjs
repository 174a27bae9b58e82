// What the unchanged mobile app renders on this server: its member count
// (from room_stats only), its status line (the session message), who leads,
// the tempo and the playing state, through the app's own sequence of events
// (lib/mobile-app.mjs) — taps without acks, forced reconnects, app restarts.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, assertCleanLogs } from "./lib/server.mjs";
import { closeAllClients, once, sleep, waitUntil } from "./lib/client.mjs";
import { MobileApp, uid } from "./lib/mobile-app.mjs";

describe("what the mobile app renders", () => {
  let srv;
  const apps = [];
  const open = async (sessionId, name) => {
    const app = await new MobileApp(srv.url, sessionId, name).start();
    apps.push(app);
    return app;
  };
  before(async () => {
    srv = await startServer({ name: "mobile-render" });
  });
  after(async () => {
    for (const a of apps) a.stop();
    closeAllClients();
    await srv?.stop();
  });

  test("a phone alone in a session shows 1 member, and the last to join shows everyone", { timeout: 10_000 }, async () => {
    const sessionId = `alone-${uid()}`;
    const a = await open(sessionId, "A");
    await waitUntil(() => a.roomStats, 2000, "room_stats for the joiner");
    assert.equal(a.view().members, 1);
    assert.equal(a.view().status, "Guest is leading");
    const b = await open(sessionId, "B");
    await waitUntil(() => b.roomStats, 2000, "room_stats for the last to join");
    assert.equal(b.view().members, 2);
    await waitUntil(() => a.view().members === 2, 2000, "A's count after B joined");
    // The joiner's own events come in the original server's order.
    const mine = b.events.filter((e) => ["snapshot", "room_stats", "user_joined"].includes(e.event)).map((e) => e.event);
    assert.deepEqual(mine.slice(0, 3), ["snapshot", "room_stats", "user_joined"]);
  });

  test("every accepted command that changes nothing is answered with a snapshot (and play/pause)", { timeout: 10_000 }, async () => {
    const sessionId = `noop-${uid()}`;
    const a = await open(sessionId, "A");
    const b = await open(sessionId, "B");
    const cases = [
      ["set_role", { role: "leader" }, []], // claims the lead a held by default: a real change
      ["set_role", { role: "leader" }, []], // the same again: a no-op
      ["set_tempo", { tempo: 120 }, []],
      ["pause", {}, ["pause"]],
      ["play", {}, []],
      ["play", {}, ["play"]],
      ["update_message", { message: "Chorus x2" }, []],
      ["update_message", { message: "Chorus x2" }, []],
      ["set_role", { role: "follower" }, []], // b asks for what it has
    ];
    for (const [event, payload, alsoEvents] of cases) {
      const who = event === "set_role" && payload.role === "follower" ? b : a;
      const snap = once(who.socket, "snapshot", 2000);
      const extra = alsoEvents.map((e) => once(who.socket, e, 2000));
      who.tap(event, payload);
      const st = await snap.catch(() => assert.fail(`${event} ${JSON.stringify(payload)}: no snapshot`));
      await Promise.all(extra);
      assert.equal(st.sessionId, sessionId);
    }
    assert.deepEqual(a.of("error"), []);
  });

  test("a 1 BPM tempo is accepted (the app's slider allows 1-300); 0 is refused and changes nothing", { timeout: 10_000 }, async () => {
    const sessionId = `tempo-${uid()}`;
    const a = await open(sessionId, "A");
    a.tap("set_tempo", { tempo: 1 });
    await waitUntil(() => a.view().tempo === 1, 2000, "tempo 1");
    const err = once(a.socket, "error", 2000);
    a.tap("set_tempo", { tempo: 0 });
    assert.equal((await err).code, "INVALID_PAYLOAD");
    assert.equal(a.view().tempo, 1);
  });

  test("the band leader's Leader tap takes the lead from the phone that opened first; a second claim is refused", { timeout: 10_000 }, async () => {
    const sessionId = `tap-${uid()}`;
    const first = await open(sessionId, "first-phone");
    const bandLeader = await open(sessionId, "band-leader");
    assert.equal(bandLeader.view().leader, first.socket.id, "the first phone leads by default");
    const changed = once(first.socket, "role_changed", 2000);
    bandLeader.tap("set_role", { role: "leader" });
    const rc = await changed;
    assert.deepEqual([rc.socketId, rc.role, rc.previousLeader], [bandLeader.socket.id, "leader", first.socket.id]);
    await waitUntil(() => first.view().leader === bandLeader.socket.id && bandLeader.view().leader === bandLeader.socket.id, 2000, "both phones show the band leader leading");
    assert.equal(bandLeader.view().status, "Leader connected");
    // The band leader's commands now work.
    bandLeader.tap("set_tempo", { tempo: 96 });
    await waitUntil(() => first.view().tempo === 96, 2000, "the band leader's tempo on the first phone");
    // The first phone's claim is now refused, and changes nothing.
    const refused = once(first.socket, "error", 2000);
    first.tap("set_role", { role: "leader" });
    assert.equal((await refused).code, "NOT_LEADER");
    await sleep(200);
    assert.equal(first.view().leader, bandLeader.socket.id);
    assert.equal(bandLeader.view().leader, bandLeader.socket.id);
  });

  test("a phone whose app was restarted is no ghost: two phones show 2 members", { timeout: 10_000 }, async () => {
    const sessionId = `ghost-${uid()}`;
    const a = await open(sessionId, "A");
    const b = await open(sessionId, "B");
    await waitUntil(() => a.view().members === 2, 2000, "2 members");
    b.kill(); // the app is killed; its old socket never comes back
    await waitUntil(() => a.view().members === 1, 2000, "A's count after B's phone dropped");
    const b2 = await open(sessionId, "B-restarted");
    await waitUntil(() => a.view().members === 2 && b2.view().members === 2, 2000, "2 members after the restart");
    await sleep(300);
    assert.equal(a.view().members, 2);
    assert.equal(b2.view().members, 2);
  });

  // Three phones run the app's cadence for 60 s; each one's network drops
  // once (the leader's too). At every checkpoint each screen must show the
  // right count, leader, tempo, playing state and status text.
  test("3 phones for 60 s with three forced reconnects render the right state at every checkpoint", { timeout: 90_000 }, async () => {
    const sessionId = `band-${uid()}`;
    const a = await open(sessionId, "phone-A");
    const b = await open(sessionId, "phone-B");
    const c = await open(sessionId, "phone-C");
    const phones = [a, b, c];
    const t0 = Date.now();
    const checkpoints = [];
    const expect = async (label, want) => {
      // A screen may lag a change by a moment; what matters is that it
      // settles on the truth quickly and stays there.
      try {
        await waitUntil(() => phones.every((p) => matches(p.view(), want())), 2000, label);
      } catch {
        /* reported below with the views */
      }
      const views = phones.map((p) => ({ name: p.name, ...p.view() }));
      checkpoints.push({ at: Date.now() - t0, label, views });
      for (const v of views) {
        assert.deepEqual(pick(v), want(), `${label}: ${v.name} shows ${JSON.stringify(v)}`);
      }
    };
    const pick = (v) => ({ members: v.members, status: v.status, tempo: v.tempo, playing: v.playing, leader: v.leader });
    const matches = (v, w) => JSON.stringify(pick(v)) === JSON.stringify(w);
    const until = (ms) => sleep(Math.max(0, t0 + ms - Date.now()));
    let state = { members: 3, status: "phone-A is leading", tempo: 120, playing: false, leader: null };
    state.leader = a.socket.id;
    const want = () => ({ ...state });
    // The app sends no displayName: every phone is "Guest".
    state.status = "Guest is leading";
    await expect("three phones joined", want);

    b.tap("set_role", { role: "leader" }); // the band leader taps "Leader"
    state = { ...state, leader: b.socket.id, status: "Leader connected" };
    await expect("B took the lead", want);

    b.tap("set_tempo", { tempo: 92 });
    b.tap("play");
    state = { ...state, tempo: 92, playing: true };
    await expect("B plays at 92", want);

    for (const [at, phone] of [[15_000, a], [30_000, c], [45_000, b]]) {
      await until(at);
      const r = await phone.dropAndReconnect();
      assert.equal(r.recovered, true, `${phone.name}'s reconnect was not recovered`);
      await waitUntil(() => phone.connects >= 2, 3000, `${phone.name}'s re-join`);
      await expect(`after ${phone.name}'s reconnect`, want);
      await until(at + 5000);
      await expect(`5 s after ${phone.name}'s reconnect`, want);
    }

    await until(55_000);
    b.tap("pause");
    b.tap("set_tempo", { tempo: 100 });
    state = { ...state, playing: false, tempo: 100 };
    await expect("B paused and set 100", want);
    await until(60_000);
    await expect("after 60 s", want);
    for (const p of phones) {
      assert.deepEqual(p.problems, [], `${p.name} could not read: ${p.problems.slice(0, 3).join("; ")}`);
      assert.deepEqual(p.of("error").map((e) => e.arg), [], `${p.name} got errors`);
    }
    assert.ok(checkpoints.length >= 10, `${checkpoints.length} checkpoints`);
  });

  test("server: no data race, no panic", { timeout: 20_000 }, async () => {
    for (const a of apps) a.stop();
    closeAllClients();
    const { logs } = await srv.stop();
    assertCleanLogs(logs, "mobile-render server");
  });
});
