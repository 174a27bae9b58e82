// Songs, setlists, handover and resume (docs/protocol.md),
// driven by the official socket.io-client@4 against the real server.
// "Changes nothing" is checked against GET /sessions/:id (version and the
// songs fields) and against what the other members receive.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, httpGet, assertCleanLogs } from "./lib/server.mjs";
import { connect, once, emitAck, collect, closeAllClients, sleep, waitUntil } from "./lib/client.mjs";
import { haveRedisServer, testRedis } from "./lib/redis.mjs";
import { SONGS_TEST_CLIENT_EVENTS, missingFrom } from "./lib/protocol.mjs";

const T = { timeout: 30_000 };
const uid = () => Math.random().toString(36).slice(2, 10);
const sessionName = (prefix) => `songs-${prefix}-${uid()}`;

const CHART = `{title: Lights Come On}
{artist: The Band}
{key: Am}
{tempo: 96}
{time: 3/4}
{c: Intro}
{soc}
[Am7]Lights come [D]on
{eoc}
`;
const SUMMARY_KEYS = ["songId", "title", "artist", "key", "tempo", "timeSignature", "version"];

async function getState(srv, id) {
  const res = await httpGet(`${srv.url}/sessions/${id}`);
  assert.equal(res.status, 200, `GET /sessions/${id}: ${res.body}`);
  return res.json();
}

async function ok(socket, event, payload) {
  const ack = await emitAck(socket, event, payload);
  assert.equal(ack.ok, true, `${event} ${JSON.stringify(payload).slice(0, 120)} refused: ${JSON.stringify(ack.error)}`);
  return ack;
}

async function refused(socket, event, payload, code) {
  const ack = await emitAck(socket, event, payload);
  assert.equal(ack.ok, false, `${event} should be refused with ${code}, got ${JSON.stringify(ack).slice(0, 200)}`);
  assert.equal(ack.error.code, code, `${event}: ${ack.error.message}`);
  assert.ok(ack.error.message.length > 0, `${event}: ${code} without a message`);
  return ack.error;
}

/** Joins `names` in order (the first leads) and returns their sockets. */
async function band(srv, id, names) {
  const sockets = [];
  for (const n of names) {
    const s = await connect(srv.url);
    s.joinAck = await ok(s, "join_session", { sessionId: id, displayName: n });
    sockets.push(s);
  }
  return sockets;
}

/** The parts of a session that a refused command must leave alone. */
const essence = (s) => ({
  version: s.version, setlist: s.setlist, songId: s.songId, timeSignature: s.timeSignature,
  countInBars: s.countInBars, tempo: s.tempo, isPlaying: s.isPlaying, leader: s.leaderSocketId,
  members: s.members.map((m) => [m.socketId, m.role, m.displayName]),
});

describe("songs and setlists", () => {
  let srv;
  before(async () => {
    srv = await startServer({ name: "songs" });
  });
  after(async () => {
    closeAllClients();
    const { logs } = await srv.stop();
    assertCleanLogs(logs);
  });

  test("a new session has the default song fields; a member's snapshot carries them", T, async () => {
    const id = sessionName("defaults");
    const [a] = await band(srv, id, ["Alex"]);
    const st = a.joinAck.state;
    assert.deepEqual(st.setlist, []);
    assert.equal(st.songId, null);
    assert.deepEqual(st.timeSignature, { beatsPerBar: 4, beatUnit: 4 });
    assert.equal(st.countInBars, 1);
  });

  test("add_song: the leader's chart joins the setlist on every device, without its text", T, async () => {
    const id = sessionName("add");
    const [a, b] = await band(srv, id, ["Alex", "Sam"]);
    const snaps = collect(b, "snapshot");
    const ack = await ok(a, "add_song", { sessionId: id, chordpro: CHART });
    assert.deepEqual(Object.keys(ack.song).sort(), [...SUMMARY_KEYS].sort());
    assert.deepEqual(
      { ...ack.song, songId: undefined },
      { songId: undefined, title: "Lights Come On", artist: "The Band", key: "Am", tempo: 96, timeSignature: { beatsPerBar: 3, beatUnit: 4 }, version: 1 },
    );
    await waitUntil(() => snaps.some((s) => s.setlist.length === 1), 2000, "the follower's snapshot with the song");
    const seen = snaps.at(-1).setlist[0];
    assert.deepEqual(seen, ack.song);
    assert.equal(JSON.stringify(snaps.at(-1)).includes("Lights come"), false, "a snapshot must not carry chart text");

    // A chart without {tempo}/{time}: null in the summary.
    const bare = await ok(a, "add_song", { sessionId: id, chordpro: "{t: Bare}\n[C]la" });
    assert.equal(bare.song.tempo, null);
    assert.equal(bare.song.timeSignature, null);
    assert.equal(bare.song.artist, "");
    assert.notEqual(bare.song.songId, ack.song.songId);
  });

  test("get_song returns the chart exactly as added, by ack or as a `song` event", T, async () => {
    const id = sessionName("get");
    const [a, b] = await band(srv, id, ["Alex", "Sam"]);
    const weird = CHART + "  trailing spaces  \r\n\u00e9\u{1F3B8}\n";
    const { song } = await ok(a, "add_song", { sessionId: id, chordpro: weird });
    const got = await ok(b, "get_song", { sessionId: id, songId: song.songId });
    assert.equal(got.song.chordpro, weird);
    assert.deepEqual(Object.keys(got.song).sort(), [...SUMMARY_KEYS, "chordpro"].sort());
    const ev = once(b, "song");
    b.emit("get_song", { sessionId: id, songId: song.songId });
    assert.equal((await ev).chordpro, weird);
  });

  test("select_song stops at 0 and takes the chart's tempo and time signature; the room gets song_changed", T, async () => {
    const id = sessionName("select");
    const [a, b] = await band(srv, id, ["Alex", "Sam"]);
    await ok(a, "set_tempo", { sessionId: id, tempo: 140 });
    await ok(a, "play", { sessionId: id });
    await sleep(300);
    const { song } = await ok(a, "add_song", { sessionId: id, chordpro: CHART });
    const changed = once(b, "song_changed");
    const snap = once(b, "snapshot", 2000, (s) => s.songId === song.songId);
    const ack = await ok(a, "select_song", { sessionId: id, songId: song.songId });
    assert.deepEqual(await changed, { sessionId: id, songId: song.songId, title: "Lights Come On", tempoBpm: 96, timeSignature: { beatsPerBar: 3, beatUnit: 4 } });
    const s = await snap;
    for (const st of [s, ack.state]) {
      assert.equal(st.isPlaying, false);
      assert.equal(st.position, 0);
      assert.equal(st.tempo, 96);
      assert.deepEqual(st.timeSignature, { beatsPerBar: 3, beatUnit: 4 });
    }
    // A chart without tempo and time keeps the session's.
    await ok(a, "set_tempo", { sessionId: id, tempo: 101 });
    const bare = await ok(a, "add_song", { sessionId: id, chordpro: "{title: Bare}" });
    const st2 = (await ok(a, "select_song", { sessionId: id, songId: bare.song.songId })).state;
    assert.equal(st2.tempo, 101);
    assert.deepEqual(st2.timeSignature, { beatsPerBar: 3, beatUnit: 4 });
    assert.equal(st2.songId, bare.song.songId);
  });
});

describe("setlist changes and every refusal", () => {
  let srv;
  before(async () => {
    // 100 songs are added back to back in one test; the per-socket rate
    // limit is not what it is about.
    srv = await startServer({ name: "songs-refusals", env: { RATE_LIMIT_MAX_REQUESTS: "2000" } });
  });
  after(async () => {
    closeAllClients();
    const { logs } = await srv.stop();
    assertCleanLogs(logs);
  });

  test("update_song bumps the song's version; move_song clamps; remove_song of the current song clears songId", T, async () => {
    const id = sessionName("edit");
    const [a, b] = await band(srv, id, ["Alex", "Sam"]);
    const ids = [];
    for (const t of ["A", "B", "C"]) ids.push((await ok(a, "add_song", { sessionId: id, chordpro: `{title: ${t}}` })).song.songId);
    const titles = (st) => st.setlist.map((s) => s.title).join("");
    assert.equal(titles((await ok(a, "move_song", { sessionId: id, songId: ids[0], index: 99 })).state), "BCA");
    assert.equal(titles((await ok(a, "move_song", { sessionId: id, songId: ids[2], index: -3 })).state), "CBA");
    assert.equal(titles((await ok(a, "move_song", { sessionId: id, songId: ids[1], index: 1.0 })).state), "CBA");
    await ok(a, "select_song", { sessionId: id, songId: ids[1] });
    const snap = once(b, "snapshot", 2000, (s) => s.setlist.some((x) => x.version === 2));
    const up = await ok(a, "update_song", { sessionId: id, songId: ids[1], chordpro: "{title: B2}\n{key: E}" });
    const song = up.state.setlist.find((s) => s.songId === ids[1]);
    assert.deepEqual([song.title, song.key, song.version], ["B2", "E", 2]);
    assert.deepEqual((await snap).setlist.find((s) => s.songId === ids[1]), song);
    assert.equal((await ok(b, "get_song", { sessionId: id, songId: ids[1] })).song.chordpro, "{title: B2}\n{key: E}");
    const rm = await ok(a, "remove_song", { sessionId: id, songId: ids[1] });
    assert.equal(rm.state.songId, null);
    assert.equal(titles(rm.state), "CA");
  });

  test("set_time_signature and set_count_in reach every device", T, async () => {
    const id = sessionName("meter");
    const [a, b] = await band(srv, id, ["Alex", "Sam"]);
    let snap = once(b, "snapshot", 2000, (s) => s.timeSignature.beatsPerBar === 7);
    await ok(a, "set_time_signature", { sessionId: id, beatsPerBar: 7, beatUnit: 8 });
    assert.deepEqual((await snap).timeSignature, { beatsPerBar: 7, beatUnit: 8 });
    snap = once(b, "snapshot", 2000, (s) => s.countInBars === 0);
    await ok(a, "set_count_in", { sessionId: id, bars: 0 });
    await snap;
    const st = await getState(srv, id);
    assert.deepEqual([st.timeSignature, st.countInBars], [{ beatsPerBar: 7, beatUnit: 8 }, 0]);
  });

  test("every refusal has its code and changes nothing, by ack and by `error` event", { timeout: 60_000 }, async () => {
    const id = sessionName("refuse");
    const [a, b] = await band(srv, id, ["Alex", "Sam"]);
    const outsider = await connect(srv.url);
    const { song } = await ok(a, "add_song", { sessionId: id, chordpro: CHART });
    await ok(a, "select_song", { sessionId: id, songId: song.songId });
    const before = essence(await getState(srv, id));
    const seen = [a, b].map((s) => collect(s, "snapshot"));
    const S = id, G = song.songId;
    const tooBig = `{title: big}\n${"x".repeat(64 * 1024)}`;
    const cases = [
      // [who, event, payload, code]
      [a, "add_song", { sessionId: S }, "INVALID_PAYLOAD"],
      [a, "add_song", { sessionId: S, chordpro: 42 }, "INVALID_PAYLOAD"],
      [a, "add_song", { sessionId: S, chordpro: "[C]no title here" }, "INVALID_PAYLOAD"],
      [a, "add_song", { sessionId: S, chordpro: "{title: x}\n{tempo: 400}" }, "INVALID_PAYLOAD"],
      [a, "add_song", { sessionId: S, chordpro: "{title: x}\n{time: 5/3}" }, "INVALID_PAYLOAD"],
      [a, "add_song", { sessionId: S, chordpro: tooBig }, "PAYLOAD_TOO_LARGE"],
      [a, "add_song", { sessionId: "bad id", chordpro: CHART }, "INVALID_SESSION_ID"],
      [b, "add_song", { sessionId: S, chordpro: CHART }, "NOT_LEADER"],
      [outsider, "add_song", { sessionId: S, chordpro: CHART }, "NOT_IN_SESSION"],
      [a, "update_song", { sessionId: S, songId: "song-999", chordpro: CHART }, "SONG_NOT_FOUND"],
      [a, "update_song", { sessionId: S, songId: G, chordpro: "no title" }, "INVALID_PAYLOAD"],
      [a, "update_song", { sessionId: S, chordpro: CHART }, "INVALID_PAYLOAD"],
      [a, "update_song", { sessionId: S, songId: G, chordpro: tooBig }, "PAYLOAD_TOO_LARGE"],
      [b, "update_song", { sessionId: S, songId: G, chordpro: CHART + "x" }, "NOT_LEADER"],
      [a, "remove_song", { sessionId: S, songId: "song-999" }, "SONG_NOT_FOUND"],
      [a, "remove_song", { sessionId: S, songId: 7 }, "INVALID_PAYLOAD"],
      [b, "remove_song", { sessionId: S, songId: G }, "NOT_LEADER"],
      [a, "move_song", { sessionId: S, songId: "song-999", index: 0 }, "SONG_NOT_FOUND"],
      [a, "move_song", { sessionId: S, songId: G, index: 1.5 }, "INVALID_PAYLOAD"],
      [a, "move_song", { sessionId: S, songId: G, index: "0" }, "INVALID_PAYLOAD"],
      [a, "move_song", { sessionId: S, songId: G }, "INVALID_PAYLOAD"],
      [b, "move_song", { sessionId: S, songId: G, index: 0 }, "NOT_LEADER"],
      [a, "select_song", { sessionId: S, songId: "song-999" }, "SONG_NOT_FOUND"],
      [a, "select_song", { sessionId: S }, "INVALID_PAYLOAD"],
      [b, "select_song", { sessionId: S, songId: G }, "NOT_LEADER"],
      [a, "get_song", { sessionId: S, songId: "song-999" }, "SONG_NOT_FOUND"],
      [outsider, "get_song", { sessionId: S, songId: G }, "NOT_IN_SESSION"],
      [a, "set_time_signature", { sessionId: S, beatsPerBar: 0, beatUnit: 4 }, "INVALID_PAYLOAD"],
      [a, "set_time_signature", { sessionId: S, beatsPerBar: 17, beatUnit: 4 }, "INVALID_PAYLOAD"],
      [a, "set_time_signature", { sessionId: S, beatsPerBar: 2.5, beatUnit: 4 }, "INVALID_PAYLOAD"],
      [a, "set_time_signature", { sessionId: S, beatsPerBar: 4, beatUnit: 3 }, "INVALID_PAYLOAD"],
      [a, "set_time_signature", { sessionId: S, beatsPerBar: 4, beatUnit: 32 }, "INVALID_PAYLOAD"],
      [a, "set_time_signature", { sessionId: S, beatsPerBar: 4 }, "INVALID_PAYLOAD"],
      [b, "set_time_signature", { sessionId: S, beatsPerBar: 6, beatUnit: 8 }, "NOT_LEADER"],
      [a, "set_count_in", { sessionId: S, bars: -1 }, "INVALID_PAYLOAD"],
      [a, "set_count_in", { sessionId: S, bars: 5 }, "INVALID_PAYLOAD"],
      [a, "set_count_in", { sessionId: S, bars: 1.5 }, "INVALID_PAYLOAD"],
      [a, "set_count_in", { sessionId: S, bars: "2" }, "INVALID_PAYLOAD"],
      [b, "set_count_in", { sessionId: S, bars: 2 }, "NOT_LEADER"],
      [a, "transfer_leadership", { sessionId: S, socketId: "nobody" }, "INVALID_PAYLOAD"],
      [a, "transfer_leadership", { sessionId: S }, "INVALID_PAYLOAD"],
      [b, "transfer_leadership", { sessionId: S, socketId: b.id }, "NOT_LEADER"],
      [outsider, "transfer_leadership", { sessionId: S, socketId: outsider.id }, "NOT_IN_SESSION"],
    ];
    assert.deepEqual(missingFrom(SONGS_TEST_CLIENT_EVENTS, cases.map(([, event]) => event)), [], "song events with no refusal case");
    for (const [who, event, payload, code] of cases) {
      await refused(who, event, payload, code);
      // The same refusal without an ack arrives as an `error` event.
      const err = once(who, "error");
      who.emit(event, payload);
      const e = await err;
      assert.deepEqual([e.code, e.event], [code, event], `${event} error event: ${JSON.stringify(e)}`);
    }
    for (const bad of [undefined, null, [], "text", 7]) {
      await refused(a, "add_song", bad, "INVALID_PAYLOAD");
      await refused(a, "select_song", bad, "INVALID_PAYLOAD");
    }
    await sleep(200);
    assert.deepEqual(essence(await getState(srv, id)), before, "a refusal changed the session");
    assert.deepEqual(seen.map((s) => s.length), [0, 0], "a refusal sent a snapshot");
  });

  test("a 101st song is LIBRARY_FULL and changes nothing", { timeout: 60_000 }, async () => {
    const id = sessionName("full");
    const [a] = await band(srv, id, ["Alex"]);
    for (let i = 0; i < 100; i++) await ok(a, "add_song", { sessionId: id, chordpro: `{title: Song ${i}}` });
    const before = essence(await getState(srv, id));
    await refused(a, "add_song", { sessionId: id, chordpro: "{title: one too many}" }, "LIBRARY_FULL");
    assert.deepEqual(essence(await getState(srv, id)), before);
    assert.equal(before.setlist.length, 100);
  });
});

describe("handing over and coming back", () => {
  let srv;
  const GRACE = 1500;
  before(async () => {
    srv = await startServer({ name: "songs-resume", env: { LEADER_GRACE_MS: String(GRACE) } });
  });
  after(async () => {
    closeAllClients();
    const { logs } = await srv.stop();
    assertCleanLogs(logs);
    const all = logs.join ? logs.join("\n") : String(logs);
    for (const t of tokensSeen) assert.equal(all.includes(t), false, "a member token appeared in a log line");
  });
  const tokensSeen = [];

  test("transfer_leadership: the named member leads at once; role_changed says handover", T, async () => {
    const id = sessionName("handover");
    const [a, b, c] = await band(srv, id, ["Alex", "Sam", "Kim"]);
    const rc = once(c, "role_changed");
    const snap = once(c, "snapshot", 2000, (s) => s.leaderSocketId === b.id);
    const ack = await ok(a, "transfer_leadership", { sessionId: id, socketId: b.id });
    assert.equal(ack.state.leaderSocketId, b.id);
    const r = await rc;
    assert.deepEqual([r.socketId, r.role, r.previousLeader, r.reason], [b.id, "leader", a.id, "handover"]);
    const s = await snap;
    assert.deepEqual(s.members.map((m) => m.role), ["follower", "leader", "follower"]);
    await refused(a, "play", { sessionId: id }, "NOT_LEADER");
    await ok(b, "play", { sessionId: id });
  });

  test("transfer_leadership to a member whose socket dropped is refused", T, async () => {
    const id = sessionName("handover-gone");
    const [a] = await band(srv, id, ["Alex"]);
    const b = await connect(srv.url, { reconnection: false });
    await ok(b, "join_session", { sessionId: id, displayName: "Sam" });
    const bid = b.id;
    b.io.engine.close(); // the transport drops: Sam stays a member, detached
    await waitUntil(async () => (await getState(srv, id)).members.some((m) => m.socketId === bid && !m.connected), 3000, "Sam detached");
    const before = essence(await getState(srv, id));
    await refused(a, "transfer_leadership", { sessionId: id, socketId: bid }, "INVALID_PAYLOAD");
    assert.deepEqual(essence(await getState(srv, id)), before);
  });

  test("every join gives the joiner, and only the joiner, a private memberToken", T, async () => {
    const id = sessionName("token");
    const [a] = await band(srv, id, ["Alex"]);
    const b = await connect(srv.url);
    const othersGot = collect(a, "session_joined");
    const priv = once(b, "session_joined");
    const ack = await ok(b, "join_session", { sessionId: id, displayName: "Sam" });
    const ev = await priv;
    assert.equal(typeof ack.memberToken, "string");
    assert.ok(ack.memberToken.length >= 22, "at least 128 random bits");
    assert.deepEqual(ev, { sessionId: id, memberToken: ack.memberToken });
    assert.notEqual(ack.memberToken, a.joinAck.memberToken);
    // The mobile app's re-join (sessionId only) gets the same token back.
    assert.equal((await ok(b, "join_session", { sessionId: id })).memberToken, ack.memberToken);
    await sleep(100);
    assert.deepEqual(othersGot, []);
    const http = JSON.stringify(await getState(srv, id));
    const snap = JSON.stringify(ack.state);
    for (const t of [ack.memberToken, a.joinAck.memberToken]) {
      tokensSeen.push(t);
      assert.equal(http.includes(t) || snap.includes(t), false, "a token leaked into a snapshot or an HTTP answer");
    }
  });

  test("a leader who reloads during play takes the lead back: no role_changed to anyone, the band keeps playing", T, async () => {
    const id = sessionName("reload");
    const lead = await connect(srv.url, { reconnection: false });
    const { memberToken, state } = await ok(lead, "join_session", { sessionId: id, displayName: "Alex" });
    tokensSeen.push(memberToken);
    const [f] = await band(srv, id, ["Sam"]);
    const roles = collect(f, "role_changed");
    await ok(lead, "play", { sessionId: id });
    await sleep(200);
    lead.io.engine.close(); // the page goes away without a goodbye
    await waitUntil(async () => !(await getState(srv, id)).members[0].connected, 3000, "the leader detached");
    await sleep(300);
    const again = await connect(srv.url);
    const ack = await ok(again, "join_session", { sessionId: id, memberToken });
    assert.equal(ack.state.leaderSocketId, again.id);
    assert.equal(ack.state.isPlaying, true, "the band stopped");
    assert.deepEqual(ack.state.members.map((m) => [m.socketId, m.displayName, m.role, m.connected, m.joinedAt]), [
      [again.id, "Alex", "leader", true, state.members[0].joinedAt],
      [f.id, "Sam", "follower", true, ack.state.members[1].joinedAt],
    ]);
    await sleep(GRACE + 500); // past the old socket's grace period
    assert.deepEqual(roles, [], "someone was told about a leadership change");
    const st = await getState(srv, id);
    assert.equal(st.leaderSocketId, again.id);
    assert.equal(st.isPlaying, true);
    assert.equal(st.memberCount, 2, "a ghost of the old socket stayed");
    await ok(again, "pause", { sessionId: id });
  });

  test("a second socket with the token takes the place of a still-connected one, which leaves the session", T, async () => {
    const id = sessionName("twice");
    const [a, b] = await band(srv, id, ["Alex", "Sam"]);
    const a2 = await connect(srv.url);
    await ok(a2, "join_session", { sessionId: id, memberToken: a.joinAck.memberToken });
    tokensSeen.push(a.joinAck.memberToken);
    const st = await getState(srv, id);
    assert.deepEqual(st.members.map((m) => m.socketId), [a2.id, b.id]);
    assert.equal(st.leaderSocketId, a2.id);
    const oldGot = collect(a, "snapshot");
    await ok(b, "update_message", { sessionId: id, message: "hi" });
    await sleep(150);
    assert.deepEqual(oldGot, [], "the replaced socket still gets the session's events");
    await refused(a, "play", { sessionId: id }, "NOT_IN_SESSION");
  });

  test("a wrong token is ignored: the join is an ordinary one", T, async () => {
    const id = sessionName("wrong");
    const [a] = await band(srv, id, ["Alex"]);
    const c = await connect(srv.url);
    const ack = await ok(c, "join_session", { sessionId: id, displayName: "Kim", memberToken: "not-a-token" });
    assert.deepEqual(ack.state.members.map((m) => [m.socketId, m.role]), [[a.id, "leader"], [c.id, "follower"]]);
    assert.notEqual(ack.memberToken, "not-a-token");
    await refused(c, "join_session", { sessionId: id, memberToken: 5 }, "INVALID_PAYLOAD");
  });

  test("a leader back after the grace period is back as a follower", T, async () => {
    const id = sessionName("late");
    const lead = await connect(srv.url, { reconnection: false });
    const { memberToken } = await ok(lead, "join_session", { sessionId: id, displayName: "Alex" });
    tokensSeen.push(memberToken);
    const [f] = await band(srv, id, ["Sam"]);
    const rc = once(f, "role_changed", GRACE + 3000);
    lead.io.engine.close();
    assert.equal((await rc).reason, "leader_disconnected");
    const again = await connect(srv.url);
    const ack = await ok(again, "join_session", { sessionId: id, memberToken });
    assert.equal(ack.state.leaderSocketId, f.id);
    assert.deepEqual(ack.state.members.map((m) => [m.socketId, m.displayName, m.role]), [[again.id, "Alex", "follower"], [f.id, "Sam", "leader"]]);
  });
});

// With Redis, songs are stored with the session: two instances, a leader
// on one, a follower on the other, and an instance started afterwards.
const CI = !!process.env.CI && process.env.CI !== "false";
const canRedis = haveRedisServer() || !!process.env.BANDSYNC_TEST_REDIS_URL;
if (!canRedis) {
  const msg = "songs.test.mjs: the Redis suite is SKIPPED: no redis-server and no BANDSYNC_TEST_REDIS_URL";
  if (CI) throw new Error(`${msg} (FAILED: CI is set)`);
  console.error(`!!! ${msg}`);
}

describe("songs with several instances on one Redis", { skip: !canRedis }, () => {
  let redis;
  const servers = [];
  const prefix = `e2e-songs-${uid()}:`;
  const instance = async (name) => {
    const srv = await startServer({
      name: `songs-redis-${name}`,
      env: { REDIS_URL: redis.url, REDIS_KEY_PREFIX: prefix, INSTANCE_ID: `${prefix}${name}`, REDIS_HEARTBEAT_MS: "200" },
    });
    servers.push(srv);
    return srv;
  };
  before(async () => {
    redis = await testRedis();
  });
  after(async () => {
    closeAllClients();
    for (const s of servers.splice(0)) assertCleanLogs((await s.stop()).logs, `server '${s.name}'`);
    await redis?.stop();
  });

  test("a setlist built on A is the setlist on B, charts included, and on an instance started later", { timeout: 60_000 }, async () => {
    const [A, B] = [await instance("A"), await instance("B")];
    const id = sessionName("redis");
    const lead = await connect(A.url);
    await ok(lead, "join_session", { sessionId: id, displayName: "Alex" });
    const fol = await connect(B.url);
    await ok(fol, "join_session", { sessionId: id, displayName: "Sam" });
    const changed = once(fol, "song_changed", 5000);
    const { song } = await ok(lead, "add_song", { sessionId: id, chordpro: CHART });
    await ok(lead, "select_song", { sessionId: id, songId: song.songId });
    assert.equal((await changed).songId, song.songId);
    assert.equal((await ok(fol, "get_song", { sessionId: id, songId: song.songId })).song.chordpro, CHART);
    await refused(fol, "select_song", { sessionId: id, songId: song.songId }, "NOT_LEADER");
    await refused(fol, "get_song", { sessionId: id, songId: "song-404" }, "SONG_NOT_FOUND");

    const C = await instance("C");
    const late = await connect(C.url);
    const st = (await ok(late, "join_session", { sessionId: id, displayName: "Kim" })).state;
    assert.deepEqual([st.songId, st.tempo, st.timeSignature, st.setlist.length], [song.songId, 96, { beatsPerBar: 3, beatUnit: 4 }, 1]);
    assert.equal((await ok(late, "get_song", { sessionId: id, songId: song.songId })).song.chordpro, CHART);
  });

  test("a leader whose reload lands on another instance leads again with its token", { timeout: 60_000 }, async () => {
    const [A, B] = servers.length >= 2 ? servers : [await instance("A2"), await instance("B2")];
    const id = sessionName("redis-resume");
    const lead = await connect(A.url, { reconnection: false });
    const { memberToken } = await ok(lead, "join_session", { sessionId: id, displayName: "Alex" });
    const fol = await connect(B.url);
    await ok(fol, "join_session", { sessionId: id, displayName: "Sam" });
    const roles = collect(fol, "role_changed");
    await ok(lead, "play", { sessionId: id });
    lead.io.engine.close();
    await sleep(300);
    const again = await connect(B.url);
    const ack = await ok(again, "join_session", { sessionId: id, memberToken });
    assert.equal(ack.state.leaderSocketId, again.id);
    assert.equal(ack.state.isPlaying, true);
    await sleep(5500); // past the default grace period
    assert.deepEqual(roles, []);
    await ok(again, "pause", { sessionId: id });
  });
});
