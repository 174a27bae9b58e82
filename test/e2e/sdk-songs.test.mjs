// The SDK's songs, handover and resume methods (docs/protocol.md)
// against the real server: what the web app builds on.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, assertCleanLogs } from "./lib/server.mjs";
import { sleep, waitUntil } from "./lib/client.mjs";
import { sdk } from "./lib/sdk.mjs";

const { connect } = sdk;

const uid = () => Math.random().toString(36).slice(2, 10);
const T = { timeout: 30_000 };
const clients = new Set();
const client = (url) => {
  const c = connect(url);
  clients.add(c);
  return c;
};

describe("SDK: songs, handover and resume", () => {
  let srv;
  before(async () => {
    srv = await startServer({ name: "sdk-songs" });
  });
  after(async () => {
    for (const c of clients) c.close();
    const { logs } = await srv.stop();
    assertCleanLogs(logs, "server 'sdk-songs'");
  });

  test("a leader builds a setlist and selects a song; the follower's state follows and it reads the chart", T, async () => {
    const id = `sdk-songs-${uid()}`;
    const lead = client(srv.url);
    const fol = client(srv.url);
    await lead.join(id, { displayName: "Alex" });
    await fol.join(id, { displayName: "Sam" });
    const chart = "{title: One}\n{tempo: 90}\n{time: 6/8}\n[D]la";
    const one = await lead.addSong(chart);
    const two = await lead.addSong("{title: Two}");
    assert.equal(one.title, "One");
    await lead.moveSong(two.songId, 0);
    await lead.setCountIn(2);
    const st = await lead.selectSong(one.songId);
    assert.deepEqual([st.songId, st.tempo, st.timeSignature.beatsPerBar, st.countInBars], [one.songId, 90, 6, 2]);
    await waitUntil(() => fol.state?.songId === one.songId, 2000, "the follower's state has the song");
    assert.deepEqual(fol.state.setlist.map((s) => s.title), ["Two", "One"]);
    assert.equal((await fol.getSong(one.songId)).chordpro, chart);
    await assert.rejects(fol.selectSong(two.songId), (e) => e.code === "NOT_LEADER");
    await assert.rejects(lead.getSong("song-404"), (e) => e.code === "SONG_NOT_FOUND");
    await lead.setTimeSignature(7, 8);
    await lead.updateSong(two.songId, "{title: Two, again}");
    await lead.removeSong(two.songId);
    await lead.transferLeadership(fol.socket.id);
    await waitUntil(() => fol.role === "leader", 2000, "the follower leads");
  });

  test("the token from a join resumes the place after a reload", T, async () => {
    const id = `sdk-resume-${uid()}`;
    const lead = client(srv.url);
    const tokenEv = new Promise((r) => lead.on("memberToken", r));
    await lead.join(id, { displayName: "Alex" });
    const { memberToken } = await tokenEv;
    assert.equal(lead.memberToken, memberToken);
    const fol = client(srv.url);
    await fol.join(id, { displayName: "Sam" });
    await lead.play();
    // The page reloads: its socket drops without a goodbye (a browser does
    // not send socket.io's DISCONNECT on unload).
    lead.socket.io.reconnection(false);
    lead.socket.io.engine.close();
    await sleep(100);
    const again = client(srv.url);
    const st = await again.resume(id, memberToken);
    assert.equal(again.role, "leader", JSON.stringify({ leader: st.leaderSocketId, me: again.socket.id, members: st.members }));
    assert.equal(st.isPlaying, true);
    assert.deepEqual(st.members.map((m) => m.displayName), ["Alex", "Sam"]);
  });
});
