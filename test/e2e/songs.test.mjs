// Songs, setlists, handover and resume (PROTOCOL.md sections 8 and 9),
// driven by the official socket.io-client@4 against the real server.
// "Changes nothing" is checked against GET /sessions/:id (version and the
// songs fields) and against what the other members receive.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, httpGet, assertCleanLogs } from "./lib/server.mjs";
import { connect, once, emitAck, collect, closeAllClients, sleep, waitUntil } from "./lib/client.mjs";

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

describe("songs and setlists (PROTOCOL.md section 8)", () => {
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
