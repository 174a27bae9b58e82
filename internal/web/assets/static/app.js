// BandSync web app: join a session, lead or follow. Every number on screen
// comes from the SDK's clock-synced position and beat, computed for the
// instant each frame is drawn, so every device in the band shows the same
// bar at the same moment.
import { connect, MAX_POSITION_MS } from "../sdk/bandsync.js";
import { SONG } from "./song.js";
import { parseChordPro, transposeChord } from "./chordpro.js";

const $ = (id) => document.getElementById(id);
const SESSION_RE = /^[A-Za-z0-9_-]{1,64}$/;

const client = connect(location.origin);
window.bandsyncClient = client; // for the curious, from the devtools console

// ---------------------------------------------------------------- liveness

// A device that hears nothing must not look live. The server pings every
// 2.5 s and Socket.IO notices a dead link only after pingInterval +
// pingTimeout (7.5 s), far too late on stage; so the page asks for a
// heartbeat every PROBE_MS, counts every packet it receives (ticks, pings,
// answers) as a sign of life, and calls the link stale after STALE_MS of
// silence: two lost probes plus a round trip on a poor network.
const PROBE_MS = 400;
const STALE_MS = 1000;
// How long the chart keeps moving on its own after the last word from the
// server. The clock model and the tempo stay right for that long unless the
// leader changed something; past it the chart would be a guess, so it
// stops where it is and says so.
const FREEZE_MS = 8000;
const conn = $("conn");
const link = { lastHeard: performance.timeOrigin + performance.now(), lastProbe: 0, state: "live", backUntil: 0 };

function heard() {
  link.lastHeard = client.now();
}

function hookEngine() {
  const engine = client.socket.io.engine;
  if (!engine || engine.__bandsyncLive) return;
  engine.__bandsyncLive = true;
  engine.on("packet", heard);
}
client.socket.io.on("open", hookEngine);
hookEngine();

// Checked twice per probe, so a stall shows within STALE_MS + PROBE_MS / 2.
setInterval(() => {
  const now = client.now();
  if (client.socket.connected && now - link.lastProbe >= PROBE_MS - 1) {
    link.lastProbe = now;
    client.socket.emit("heartbeat", { timestamp: Date.now() });
  }
  updateLink();
}, PROBE_MS / 2);

/** The instant up to which the local clock may be trusted to draw the band. */
function honestNow() {
  const t = client.now();
  return link.state === "live" ? t : Math.min(t, link.lastHeard + FREEZE_MS);
}
const frozen = () => link.state !== "live" && client.now() > link.lastHeard + FREEZE_MS;

function updateLink() {
  if (document.body.dataset.view !== "session") {
    // Nothing on screen to be stale yet (joining is its own feedback).
    link.state = "live";
    link.backUntil = 0;
    renderLink();
    return;
  }
  const now = client.now();
  const silent = now - link.lastHeard;
  const connected = client.connectionState === "connected";
  const stale = !connected || silent > STALE_MS;
  if (stale && link.state !== "stale") {
    link.state = "stale"; // also from "resyncing": a new stall cancels the resync
  } else if (!stale && link.state === "stale") {
    // Heard again: take a fresh clock reading before saying all is well
    // (the snapshots and ticks queued during the stall arrive with it).
    link.state = "resyncing";
    const done = () => {
      if (link.state !== "resyncing") return;
      link.state = "live";
      link.backUntil = client.now() + 3000;
      renderLink();
    };
    Promise.resolve(client.syncClock?.()).then(done, done);
  }
  renderLink();
}

function renderLink() {
  const view = link.state !== "live" ? "offline" : client.now() < link.backUntil ? "back" : "live";
  document.body.dataset.link = link.state === "live" ? "live" : link.state;
  const connState = client.connectionState;
  const shownConn = connState === "connected" && link.state === "stale" ? "stale" : connState;
  if (conn.dataset.state !== shownConn) {
    conn.dataset.state = shownConn;
    $("conn-text").textContent =
      shownConn === "connected" ? "Connected" : shownConn === "stale" ? "No signal" : shownConn === "reconnecting" ? "Reconnecting…" : shownConn === "disconnected" ? "Offline" : "Connecting…";
  }
  const banner = $("link-banner");
  banner.dataset.view = view;
  banner.hidden = view === "live" || document.body.dataset.view !== "session";
  if (view === "live") return;
  const secs = Math.max(0, (client.now() - link.lastHeard) / 1000);
  if (view === "back") {
    $("link-title").textContent = "Back in sync";
    $("link-detail").textContent = "";
  } else if (link.state === "resyncing") {
    $("link-title").textContent = "Resyncing…";
    $("link-detail").textContent = "";
  } else {
    $("link-title").textContent = client.connectionState === "connected" ? "NO SIGNAL" : "OFFLINE";
    $("link-detail").textContent = frozen()
      ? `· chart stopped, last heard ${Math.round(secs)} s ago`
      : client.state?.isPlaying
        ? `· ${Math.round(secs)} s · chart runs on at ${fmtTempo(client.state.tempoBpm)} BPM, may be wrong`
        : `· ${Math.round(secs)} s since the server was heard`;
  }
}

// ---------------------------------------------------------------- chart

// The chart on screen: the demo until the leader selects a song, then the
// song's ChordPro. One bar per chord (see chordpro.js); the current bar is
// what every device agrees on.
let BPB = SONG.beatsPerBar;
const DEMO = {
  title: SONG.title,
  grid: true,
  sections: SONG.sections.map((sec) => ({
    name: sec.name,
    lines: sec.lines.map((ln) => ({ bars: ln.chords.map((c) => ({ chord: c, text: "" })), lyric: ln.lyric })),
  })),
};
/** This device's view of the chart (never sent anywhere): transpose and capo per song, text size. */
const view = loadView();
function loadView() {
  try {
    return { size: 1, songs: {}, ...JSON.parse(safeStorage("get", "bandsync.view") || "{}") };
  } catch {
    return { size: 1, songs: {} };
  }
}
function saveView() {
  safeStorage("set", "bandsync.view", JSON.stringify(view));
}
const songView = (id) => (view.songs[id || "demo"] ??= { transpose: 0, capo: 0 });

let chart = buildChart($("chart-inner"), DEMO);

function buildChart(root, song) {
  root.replaceChildren();
  const lines = [];
  const sections = [];
  const sv = songView(song.songId);
  const shift = sv.transpose - sv.capo;
  let bar = 0;
  let pending = []; // comments and tab lines, shown before the next line of bars
  for (const sec of song.sections) {
    let labelled = false;
    sec.lines.forEach((ln) => {
      if (!ln.bars?.length) {
        const el = document.createElement("div");
        el.className = ln.tab != null ? "chart-tab" : "chart-comment";
        el.textContent = ln.tab ?? ln.comment;
        pending.push(el);
        return;
      }
      const el = document.createElement("div");
      el.className = song.grid ? "chart-line" : "chart-line cp";
      el.append(...pending);
      pending = [];
      if (!labelled && sec.name) {
        const label = document.createElement("button");
        label.type = "button";
        label.className = "section-label";
        label.textContent = sec.name;
        label.dataset.bar = String(bar);
        label.title = `Jump to ${sec.name}`;
        el.appendChild(label);
        sections.push({ name: sec.name, bar });
        labelled = true;
      }
      const bars = document.createElement("div");
      bars.className = song.grid ? "bars" : "bars cp";
      const cells = ln.bars.map((b, j) => {
        const cell = document.createElement("div");
        cell.className = "bar";
        const name = transposeChord(b.chord, shift);
        // Long names shrink instead of being cut (a phone's bar is ~6
        // characters wide at full size).
        if (name.length > 5) cell.classList.add(name.length > 8 ? "longer" : "long");
        if (song.grid) {
          cell.textContent = name;
        } else {
          const c = document.createElement("span");
          c.className = "chord";
          c.textContent = name || "\u00a0";
          const w = document.createElement("span");
          w.className = "words";
          w.textContent = b.text || "\u00a0";
          cell.append(c, w);
        }
        cell.dataset.bar = String(bar + j);
        bars.appendChild(cell);
        return cell;
      });
      el.appendChild(bars);
      if (song.grid) {
        const lyric = document.createElement("div");
        lyric.className = "lyric";
        lyric.textContent = ln.lyric || "\u00a0";
        el.appendChild(lyric);
      }
      root.appendChild(el);
      lines.push({ el, cells, firstBar: bar });
      bar += ln.bars.length;
    });
  }
  if (pending.length && lines.length) lines[lines.length - 1].el.append(...pending);
  if (!lines.length) {
    // A song of comments only still needs one bar to stand on.
    const el = document.createElement("div");
    el.className = "chart-line";
    root.appendChild(el);
    lines.push({ el, cells: [], firstBar: 0 });
    bar = 1;
  }
  root.style.setProperty("--chart-size", String(view.size));
  return { root, song, lines, sections, totalBars: bar, tops: [], currentBar: -1 };
}

function redrawChart() {
  chart = buildChart(chart.root, chart.song);
  requestAnimationFrame(measureChart);
  renderViewControls();
}

// Focus (Tab, a pedal, a screen reader) scrolls the nearest scrollable box
// to show the focused label; the chart is positioned by transform only, so
// any scroll would leave it showing the wrong lines. overflow: clip stops
// that in CSS; this catches browsers without it.
$("chart").addEventListener("scroll", (ev) => {
  ev.currentTarget.scrollTop = 0;
  ev.currentTarget.scrollLeft = 0;
});

function measureChart() {
  chart.tops = chart.lines.map((l) => l.el.offsetTop);
  chart.tops.push(chart.root.scrollHeight);
}
window.addEventListener("resize", measureChart);

function renderChart(gridBeat, playing) {
  const barFloat = Math.max(0, gridBeat / BPB);
  const bar = Math.min(chart.totalBars - 1, Math.floor(barFloat));
  if (bar !== chart.currentBar) {
    chart.currentBar = bar;
    for (const line of chart.lines) {
      const isCur = bar >= line.firstBar && bar < line.firstBar + line.cells.length;
      line.el.classList.toggle("current", isCur);
      line.cells.forEach((c, j) => {
        const b = line.firstBar + j;
        c.classList.toggle("current", b === bar);
        c.classList.toggle("past", b < bar);
      });
    }
  }
  if (!chart.tops.length) measureChart();
  // The current line holds still while it is read, then the chart glides
  // to the next line during the line's last bar: a continuous function of
  // the position, so every screen scrolls alike.
  const li = Math.min(chart.lines.length - 1, chart.lines.findLastIndex((l) => l.firstBar <= bar));
  const line = chart.lines[li];
  const n = line.cells.length;
  const into = Math.min(n, Math.max(0, barFloat - line.firstBar));
  const glide = playing && li < chart.lines.length - 1 ? Math.max(0, into - (n - 1)) : 0;
  const eased = glide * glide * (3 - 2 * glide); // smoothstep
  const y = chart.tops[li] + eased * (chart.tops[li + 1] - chart.tops[li]);
  const h = $("chart").clientHeight;
  chart.root.style.transform = `translateY(${(h * 0.12 - y).toFixed(1)}px)`;
  chart.root.dataset.bar = String(bar);
}

// ---------------------------------------------------------------- rendering

const readout = $("readout");
const metronome = $("metronome");
let dots = [...metronome.querySelectorAll(".beat-dot")];
function setBeatsPerBar(n) {
  if (n === BPB) return;
  BPB = n;
  metronome.replaceChildren(
    ...Array.from({ length: n }, (_, i) => Object.assign(document.createElement("span"), { className: i === 0 ? "beat-dot accent" : "beat-dot" })),
  );
  dots = [...metronome.querySelectorAll(".beat-dot")];
  chart.currentBar = -1;
}

function fmtTime(ms) {
  const s = Math.max(0, ms) / 1000;
  const m = Math.floor(s / 60);
  const rest = s - m * 60;
  return `${m}:${rest < 10 ? "0" : ""}${rest.toFixed(1)}`;
}

const mod = (a, n) => ((a % n) + n) % n;

function frame() {
  requestAnimationFrame(frame);
  const st = client.state;
  if (!st || document.body.dataset.view !== "session") return;
  const t = honestNow();
  const playing = Boolean(st.isPlaying);
  const countIn = client.isCountingIn(t);
  const pos = client.positionAt(t);
  const grid = client.gridBeatAt(t); // = beatAt(t) except during a count-in
  const beatIdx = Math.floor(grid + 1e-9);
  const inBar = mod(beatIdx, BPB);

  readout.dataset.positionMs = String(pos);
  readout.dataset.beat = String(grid);
  readout.dataset.shownAt = String(t);
  readout.dataset.playing = String(playing);
  readout.dataset.countIn = String(countIn);
  readout.dataset.version = String(st.version);

  $("position-text").textContent = fmtTime(pos);
  if (countIn) {
    $("beat-text").textContent = `Count-in · ${inBar + 1}`;
    $("status-text").textContent = "Get ready…";
  } else {
    $("beat-text").textContent = `Bar ${Math.floor(beatIdx / BPB) + 1} · Beat ${inBar + 1}`;
    $("status-text").textContent = playing ? "Playing" : pos > 0 ? "Paused" : "Stopped";
  }
  metronome.dataset.beatInBar = playing ? String(inBar) : "";
  metronome.dataset.countIn = String(countIn);
  dots.forEach((d, i) => d.classList.toggle("on", playing && i === inBar));
  // The glow is drawn by the frame that shows the beat, from the same beat
  // position as the lit dot: a timer-driven glow came with the audio's
  // lookahead, 60 ms early, and lit the previous beat's dot.
  const beatMs = 60000 / (st.tempoBpm || 120);
  const glow = playing && !frozen() && (grid - beatIdx) * beatMs < GLOW_MS;
  metronome.classList.toggle("flash", glow);
  if (glow && metronome.dataset.flash !== String(beatIdx)) metronome.dataset.flash = String(beatIdx);
  renderChart(grid, playing && !countIn);
}
const GLOW_MS = 110;
requestAnimationFrame(frame);

// The optional click comes from the SDK's beat callbacks, early enough to
// be scheduled on the audio clock.
let audio = null;
client.onBeat(
  (b) => {
    if (audio && !frozen()) click(b);
  },
  { beatsPerBar: BPB, lookaheadMs: 120 },
);

function click(b) {
  // A sound scheduled at audio time T leaves the speaker baseLatency +
  // outputLatency later (40 ms in Chromium on Linux, more over Bluetooth):
  // schedule it that much earlier.
  const latency = (audio.baseLatency || 0) + (audio.outputLatency || 0);
  const localNow = client.now();
  const ctxNow = audio.currentTime;
  const at = ctxNow + (b.localTime - localNow) / 1000 - latency;
  if (at < ctxNow) return; // too late to be on the beat: silence beats a late click
  $("sound-btn").dataset.lastClick = JSON.stringify({ beatAt: b.localTime, localNow, ctxNow, ctxAt: at });
  const osc = audio.createOscillator();
  const gain = audio.createGain();
  osc.frequency.value = mod(b.beat, BPB) === 0 ? 1760 : 1175;
  gain.gain.setValueAtTime(0.0001, at);
  gain.gain.exponentialRampToValueAtTime(0.6, at + 0.002);
  gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.05);
  osc.connect(gain).connect(audio.destination);
  osc.start(at);
  osc.stop(at + 0.06);
}

$("sound-btn").addEventListener("click", (ev) => {
  if (audio) {
    audio.close();
    audio = null;
  } else {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (Ctx) audio = new Ctx({ latencyHint: "interactive" });
  }
  window.bandsyncAudio = audio;
  ev.currentTarget.textContent = audio ? "Click: on" : "Click: off";
  ev.currentTarget.setAttribute("aria-pressed", String(Boolean(audio)));
});

// ---------------------------------------------------------------- state

function renderState(st) {
  if (!st) return;
  document.body.dataset.role = client.role || "";
  applyLayout(st);
  $("role-badge").textContent = client.role === "leader" ? "leader" : "follower";
  $("leader-controls").hidden = client.role !== "leader";
  $("follower-controls").hidden = client.role === "leader";
  $("claim-btn").disabled = Boolean(st.leaderSocketId);
  const leaderMember = (st.members || []).find((m) => m.socketId === st.leaderSocketId);
  // While a leader who dropped keeps the lead for the grace period, say so:
  // nobody can stop the band until it passes on.
  $("claim-btn").textContent = !st.leaderSocketId
    ? "Take the lead"
    : leaderMember?.connected === false
      ? `${leaderName(st)} is offline: the lead passes on in a few seconds`
      : `${leaderName(st)} leads`;
  $("claim-btn").dataset.leaderOffline = String(leaderMember?.connected === false);
  if (client.role !== "leader") shownLeader = leaderName(st);
  const n = st.members?.length ?? 0;
  $("members").textContent = `${n} member${n === 1 ? "" : "s"}`;
  $("members").title = (st.members || []).map((m) => `${m.displayName || "anonymous"}${m.role === "leader" ? " (leader)" : ""}${m.connected === false ? " (offline)" : ""}`).join(", ");
  $("tempo-display").textContent = `${fmtTempo(st.tempoBpm)} BPM`;
  const ti = $("tempo-input");
  if (document.activeElement !== ti) ti.value = fmtTempo(st.tempoBpm);
  // The message sits over the foot of the chart (nothing moves when it
  // comes or goes); anyone may hide it on their device, the leader may
  // clear it for everyone; a new message shows again.
  const msg = $("message");
  msg.hidden = !st.message || st.message === dismissedMessage;
  $("message-text").textContent = st.message || "";
  $("message-clear").hidden = client.role !== "leader";
  $("session-name").textContent = st.sessionId;
  setBeatsPerBar(clampInt(st.timeSignature?.beatsPerBar, 1, 16) || chart.song.time?.beatsPerBar || SONG.beatsPerBar);
  $("countin-btn").textContent = (st.countInBars ?? 1) > 0 ? `Count-in ${st.countInBars ?? 1} ▶` : "Play ▶";
  if (document.activeElement !== $("countin-bars")) $("countin-bars").value = String(st.countInBars ?? 1);
  renderSetlist(st);
  renderMembers(st);
  showSong(st);
  updateWakeLock(st.isPlaying);
}

let dismissedMessage = null;
$("message-clear").addEventListener(
  "click",
  act(() => client.updateMessage("")),
);
$("message-close").addEventListener("click", () => {
  dismissedMessage = client.state?.message ?? null;
  $("message").hidden = true;
});

function leaderName(st) {
  const m = (st.members || []).find((x) => x.socketId === st.leaderSocketId);
  return m?.displayName || "Someone";
}

const fmtTempo = (t) => (Number.isInteger(t) ? String(t) : t.toFixed(1));

client.on("state", renderState);
let shownLeader = null;
client.on("role", ({ role, previous, reason }) => {
  if (role === "leader" && previous === "follower") {
    const who = shownLeader || "The leader";
    if (reason === "handover") showAlert(`${who} handed you the lead.`, "info");
    else if (reason === "leader_disconnected" || reason === "leader_left") showAlert(`${who} dropped out: you lead the band now.`, "info");
  }
  renderState(client.state);
});

/** Sets the page's layout to the role, unless the band is playing (see app.css). */
function applyLayout(st, force = false) {
  const want = client.role === "leader" ? "leader" : "follower";
  if (document.body.dataset.layout === want || (!force && st?.isPlaying && document.body.dataset.layout)) return;
  document.body.dataset.layout = want;
  requestAnimationFrame(measureChart);
}

// ---------------------------------------------------------------- connection

client.on("connection", (c) => {
  if (c.state === "connected") heard();
  document.body.dataset.connection = c.state;
  updateLink();
});
client.on("sync", (s) => {
  const q = $("quality");
  q.dataset.offsetMs = s.offsetMs.toFixed(3);
  q.dataset.rttMs = s.rttMs.toFixed(3);
  q.dataset.jitterMs = s.jitterMs.toFixed(3);
  $("q-offset").textContent = `${s.offsetMs >= 0 ? "+" : "−"}${fmtMs(Math.abs(s.offsetMs))}`;
  $("q-rtt").textContent = fmtMs(s.rttMs);
  $("q-jitter").textContent = fmtMs(s.jitterMs);
  conn.dataset.quality = s.rttMs > 150 || s.jitterMs > 25 ? "poor" : "good";
});
const fmtMs = (v) => (v >= 100 ? `${Math.round(v)} ms` : v >= 10 ? `${v.toFixed(1)} ms` : `${v.toFixed(2)} ms`);

// Keep the screen on while the band plays.
let wakeLock = null;
async function updateWakeLock(playing) {
  try {
    if (playing && !wakeLock && navigator.wakeLock && document.visibilityState === "visible") {
      wakeLock = await navigator.wakeLock.request("screen");
      wakeLock.addEventListener("release", () => (wakeLock = null));
    } else if (!playing && wakeLock) {
      await wakeLock.release();
      wakeLock = null;
    }
  } catch {
    wakeLock = null;
  }
}
document.addEventListener("visibilitychange", () => updateWakeLock(Boolean(client.state?.isPlaying)));

// ---------------------------------------------------------------- join

const params = new URLSearchParams(location.search);
$("session-input").value = canonicalSession(params.get("session") || "");
$("name-input").value = params.get("name") || safeStorage("get", "bandsync.name") || "";
if (params.get("role") === "leader") document.querySelector('input[name="role"][value="leader"]').checked = true;

$("join-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const typed = $("session-input").value.trim();
  const sessionId = canonicalSession(typed);
  const displayName = $("name-input").value.trim();
  const role = new FormData(ev.currentTarget).get("role");
  $("join-error").textContent = "";
  if (!SESSION_RE.test(sessionId)) {
    $("join-error").textContent = "Session names are 1-64 letters, digits, - or _.";
    $("session-input").focus();
    return;
  }
  $("join-btn").disabled = true;
  try {
    await client.join(sessionId, {
      displayName: displayName || undefined,
      role: role === "leader" ? "leader" : undefined,
      memberToken: savedToken(sessionId),
    });
    if (role === "leader" && client.role !== "leader") {
      showAlert(`${leaderName(client.state)} leads this session, so you joined as a follower. Ask them to hand you the lead.`, "info");
    }
    safeStorage("set", "bandsync.name", displayName);
    safeStorage("set", "bandsync.session", sessionId, sessionStorage);
    const url = new URL(location.href);
    url.searchParams.set("session", sessionId);
    history.replaceState(null, "", url);
    showView("session");
    renderState(client.state);
  } catch (err) {
    $("join-error").textContent = describe(err);
  } finally {
    $("join-btn").disabled = false;
  }
});

// The server matches session names exactly, as the original did; the
// mobile app relies on that contract, so it cannot change there. But
// "Friday" and "friday" would be two bands, and a typo in capitals leaves
// someone leading an empty session. The web app therefore always uses the
// lowercase name, and lowercases as you type so nobody is surprised. (A
// phone app must type the name in lowercase to meet web users.)
function canonicalSession(typed) {
  return typed.toLowerCase();
}
$("session-input").addEventListener("input", (ev) => {
  const el = ev.currentTarget;
  const lower = el.value.toLowerCase();
  if (lower !== el.value) {
    const at = el.selectionStart;
    el.value = lower;
    el.setSelectionRange(at, at);
  }
});

function showView(v) {
  document.body.dataset.view = v;
  $("join-view").hidden = v !== "join";
  $("session-view").hidden = v !== "session";
  if (v === "session") {
    // The join button may have scrolled the page; the session starts at the top.
    window.scrollTo(0, 0);
    applyLayout(client.state, true);
    requestAnimationFrame(measureChart);
  }
}

// Reloading the page during a gig puts you straight back in (this tab
// only: sessionStorage, not localStorage).
if (params.get("session") && params.get("session") === safeStorage("get", "bandsync.session", undefined, sessionStorage) && params.get("rejoin") !== "0") {
  $("join-form").requestSubmit();
}

$("leave-btn").addEventListener("click", async () => {
  await client.leave().catch(() => {});
  safeStorage("set", "bandsync.session", "", sessionStorage);
  safeStorage("set", "bandsync.member", "", sessionStorage);
  showView("join");
});

// ---------------------------------------------------------------- leader

function act(fn, { onError } = {}) {
  return async (ev) => {
    const btn = ev?.currentTarget;
    if (btn) btn.disabled = true;
    try {
      await fn(ev);
      // Doing something that works is acting on the refusal.
      if ($("alert").dataset.kind === "error") hideAlert();
    } catch (err) {
      onError?.(err);
      showAlert(describe(err), "error");
    } finally {
      if (btn) btn.disabled = false;
    }
  };
}

// Refusals and notices appear at the top of the window, over whatever the
// user looks at, and stay until they press OK or do something that works:
// a message below the fold that vanished after 5 s was never seen.
function showAlert(text, kind = "error") {
  const el = $("alert");
  $("alert-text").textContent = text;
  el.dataset.kind = kind;
  el.hidden = false;
}
function hideAlert() {
  $("alert").hidden = true;
  $("alert").dataset.kind = "";
}
$("alert-close").addEventListener("click", hideAlert);
client.on("error", (err) => {
  if (document.body.dataset.view === "session") showAlert(describe(err), "error");
});

function describe(err) {
  switch (err?.code) {
    case "NOT_LEADER":
      return "Only the leader can do that. " + (err.message || "");
    case "DISCONNECTED":
      return "Not connected right now; try again in a moment.";
    case "TIMEOUT":
      return "The server did not answer in time.";
    case "SESSION_FULL":
      return "That session is full.";
    case "INVALID_SESSION_ID":
      return "Session names are 1-64 letters, digits, - or _.";
    case "LIBRARY_FULL":
      return "The setlist is full (100 songs): remove one first.";
    case "PAYLOAD_TOO_LARGE":
      return "That chart is too large (64 KB at most).";
    case "SONG_NOT_FOUND":
      return "That song is no longer in the setlist.";
    default:
      return err?.message || String(err);
  }
}

$("countin-btn").addEventListener(
  "click",
  act(() => {
    const bars = client.state?.countInBars ?? 1;
    return bars > 0 ? client.countIn({ bars, beatsPerBar: BPB }) : client.play();
  }),
);
$("nextbar-btn").addEventListener("click", act(() => client.playOnNextBar({ beatsPerBar: BPB })));
$("play-btn").addEventListener("click", act(() => client.play()));
$("pause-btn").addEventListener("click", act(() => client.pause()));
$("stop-btn").addEventListener("click", act(() => client.stop()));
$("release-btn").addEventListener("click", act(() => client.releaseLeadership()));
$("claim-btn").addEventListener("click", act(() => client.claimLeadership()));

for (const b of document.querySelectorAll("[data-tempo-step]")) {
  b.addEventListener(
    "click",
    act(() => {
      const t = Math.round((client.state?.tempoBpm ?? 120) + Number(b.dataset.tempoStep));
      return client.setTempo(Math.min(300, Math.max(20, t)));
    }),
  );
}
// A refused tempo must not stay in the box while the band plays another.
const showBandTempo = () => {
  $("tempo-input").value = fmtTempo(client.state?.tempoBpm ?? 120);
};
$("tempo-input").addEventListener(
  "change",
  act(
    () => {
      const v = Number($("tempo-input").value);
      if (!(v >= 1 && v <= 300)) throw new Error(`Tempo must be 1-300 BPM; ${$("tempo-input").value || "nothing"} was not sent.`);
      return client.setTempo(v);
    },
    { onError: showBandTempo },
  ),
);

/** Position (ms) at which the current beat grid reaches `beat`. */
function positionOfBeat(beat) {
  const st = client.state;
  const pos = st.positionMs + ((beat - st.beat) * 60000) / st.tempoBpm;
  return Math.min(MAX_POSITION_MS, Math.max(0, pos));
}

/**
 * Jumps to the start of `bar`. While playing, the band's pulse must not
 * stumble: the jump keeps the place within the bar, so the bar lines stay
 * where they were in time (a jump pressed on beat 3 lands on beat 3 of the
 * target bar) and the server applies it half a round trip after it is sent.
 */
function jumpToBar(bar) {
  const st = client.state;
  if (!st) return Promise.resolve();
  bar = Math.max(0, Math.min(chart.totalBars - 1, bar));
  if (!st.isPlaying || client.isCountingIn()) return client.seek(positionOfBeat(bar * BPB));
  const oneWay = Number.isFinite(client.sync?.rttMs) ? client.sync.rttMs / 2 : 0;
  const arrives = client.now() + oneWay;
  const beatThen = client.gridBeatAt(arrives);
  const into = mod(beatThen, BPB);
  // Measured from where the band will be when the seek arrives, so that the
  // server's re-anchoring at its own now keeps the grid.
  const pos = client.positionAt(arrives) + ((bar * BPB + into - beatThen) * 60000) / st.tempoBpm;
  return client.seek(Math.min(MAX_POSITION_MS, Math.max(0, pos)));
}
const currentBar = () => Math.floor(client.gridBeatAt() / BPB + 1e-9);

for (const b of document.querySelectorAll("[data-seek-bars]")) {
  b.addEventListener(
    "click",
    act(() => jumpToBar(currentBar() + Number(b.dataset.seekBars))),
  );
}
$("chart-inner").addEventListener("click", (ev) => {
  const label = ev.target.closest(".section-label");
  if (!label || client.role !== "leader") return;
  act(() => jumpToBar(Number(label.dataset.bar)))();
});

/** The first bar of the chart line `delta` lines from the current one. */
function lineStart(delta) {
  const bar = Math.max(0, currentBar());
  const li = chart.lines.findLastIndex((l) => l.firstBar <= bar);
  const to = Math.max(0, Math.min(chart.lines.length - 1, li + delta));
  return chart.lines[to].firstBar;
}

// Keys for the leader: Space plays and pauses; the arrows and PageUp /
// PageDown (what Bluetooth page-turn pedals send) move a line. Typing in a
// field is left alone.
const PAGE_KEYS = { ArrowRight: 1, ArrowDown: 1, PageDown: 1, ArrowLeft: -1, ArrowUp: -1, PageUp: -1 };
document.addEventListener("keydown", (ev) => {
  if (client.role !== "leader" || document.body.dataset.view !== "session") return;
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t?.isContentEditable) return;
  if (ev.key === " " || ev.key === "Spacebar") {
    ev.preventDefault();
    if (!ev.repeat) act(() => (client.state?.isPlaying ? client.pause() : client.play()))();
  } else if (ev.key in PAGE_KEYS) {
    ev.preventDefault();
    act(() => jumpToBar(lineStart(PAGE_KEYS[ev.key])))();
  }
});
// A focused button would also "click" on Space's keyup.
document.addEventListener("keyup", (ev) => {
  if (ev.key === " " && client.role === "leader" && ev.target instanceof HTMLButtonElement) ev.preventDefault();
});

$("message-form").addEventListener(
  "submit",
  act(async (ev) => {
    ev.preventDefault();
    await client.updateMessage($("message-input").value);
    $("message-input").value = "";
  }),
);

function safeStorage(op, key, value, store) {
  try {
    store ??= localStorage;
    if (op === "get") return store.getItem(key);
    store.setItem(key, value);
  } catch {
    return null;
  }
  return null;
}

// ---------------------------------------------------------------- songs

const clampInt = (v, lo, hi) => (Number.isInteger(v) && v >= lo && v <= hi ? v : 0);

let songKey = "demo"; // which chart is on screen: songId@version
async function showSong(st) {
  const id = st.songId ?? null;
  const entry = id ? (st.setlist || []).find((x) => x.songId === id) : null;
  const key = id ? `${id}@${entry?.version ?? ""}` : "demo";
  if (key === songKey) return;
  songKey = key;
  if (!id) {
    chart = buildChart(chart.root, DEMO);
  } else {
    let song;
    try {
      song = await client.getSong(id);
    } catch (err) {
      songKey = null; // try again with the next snapshot
      showAlert(`Could not load the song: ${describe(err)}`, "error");
      return;
    }
    if (songKey !== key) return; // another song was selected meanwhile
    const parsed = parseChordPro(song.chordpro);
    parsed.songId = id;
    parsed.title ||= song.title;
    chart = buildChart(chart.root, parsed);
  }
  $("song-title").textContent = chart.song.songId ? [chart.song.title, chart.song.artist].filter(Boolean).join(" · ") : "";
  requestAnimationFrame(measureChart);
  renderViewControls();
}

function renderSetlist(st) {
  const list = $("setlist");
  const leader = client.role === "leader";
  const songs = st.setlist || [];
  $("songs-panel").hidden = !leader && !songs.length;
  $("song-import").hidden = !leader;
  list.replaceChildren(
    ...songs.map((song, i) => {
      const li = document.createElement("li");
      li.dataset.songId = song.songId;
      li.classList.toggle("current", song.songId === st.songId);
      const pick = document.createElement("button");
      pick.type = "button";
      pick.className = "btn song-pick";
      pick.disabled = !leader;
      const ts = song.timeSignature ? ` · ${song.timeSignature.beatsPerBar}/${song.timeSignature.beatUnit}` : "";
      pick.textContent = `${i + 1}. ${song.title}${song.key ? ` · ${song.key}` : ""}${song.tempo ? ` · ${song.tempo} BPM` : ""}${ts}`;
      pick.title = leader ? "Play this song next: every device follows" : "";
      pick.addEventListener("click", act(() => client.selectSong(song.songId)));
      li.append(pick);
      if (leader) {
        for (const [label, title, fn] of [
          ["↑", "Earlier in the set", () => client.moveSong(song.songId, i - 1)],
          ["↓", "Later in the set", () => client.moveSong(song.songId, i + 1)],
          ["✕", `Remove ${song.title}`, () => client.removeSong(song.songId)],
        ]) {
          const b = document.createElement("button");
          b.type = "button";
          b.className = "btn small";
          b.textContent = label;
          b.title = title;
          b.setAttribute("aria-label", title);
          b.addEventListener("click", act(fn));
          li.append(b);
        }
      }
      return li;
    }),
  );
}

async function addChordPro(text) {
  if (!text.trim()) throw new Error("That chart is empty.");
  if (!/\{\s*(title|t)\s*:/i.test(text)) throw new Error("A ChordPro chart needs a {title: …} line.");
  const song = await client.addSong(text);
  // The first chart of an empty set goes straight onto every screen.
  if (!client.state?.songId && song?.songId) await client.selectSong(song.songId);
  return song;
}

$("song-file").addEventListener("change", async (ev) => {
  const files = [...(ev.currentTarget.files || [])];
  ev.currentTarget.value = "";
  for (const f of files) {
    if (f.size > 64 * 1024) {
      showAlert(`${f.name} is over 64 KB; a chart must be smaller.`, "error");
      continue;
    }
    await act(async () => addChordPro(await f.text()))();
  }
});
$("song-add").addEventListener(
  "click",
  act(async () => {
    await addChordPro($("song-paste").value);
    $("song-paste").value = "";
  }),
);
$("countin-bars").addEventListener(
  "change",
  act(() => client.setCountIn(Number($("countin-bars").value))),
);

// ---------------------------------------------------------------- this device's view

function renderViewControls() {
  const sv = songView(chart.song.songId);
  $("transpose-value").textContent = sv.transpose > 0 ? `+${sv.transpose}` : String(sv.transpose);
  $("capo-value").textContent = String(sv.capo);
  $("size-value").textContent = `${Math.round(view.size * 100)}%`;
}
for (const b of document.querySelectorAll("[data-view-step]")) {
  b.addEventListener("click", () => {
    const [what, step] = b.dataset.viewStep.split(":");
    const sv = songView(chart.song.songId);
    if (what === "transpose") sv.transpose = Math.max(-11, Math.min(11, sv.transpose + Number(step)));
    if (what === "capo") sv.capo = Math.max(0, Math.min(11, sv.capo + Number(step)));
    if (what === "size") view.size = Math.max(0.6, Math.min(2, Math.round((view.size + Number(step)) * 10) / 10));
    saveView();
    redrawChart();
  });
}
renderViewControls();

// ---------------------------------------------------------------- members and handover

function renderMembers(st) {
  const leader = client.role === "leader";
  const list = $("member-list");
  list.replaceChildren(
    ...(st.members || []).map((m) => {
      const li = document.createElement("li");
      li.dataset.socketId = m.socketId;
      const name = document.createElement("span");
      name.textContent = `${m.displayName || "anonymous"}${m.socketId === st.leaderSocketId ? " · leads" : ""}${m.socketId === client.socket.id ? " (you)" : ""}${m.connected === false ? " · offline" : ""}`;
      li.append(name);
      if (leader && m.socketId !== client.socket.id && m.connected !== false) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "btn small";
        b.textContent = "Hand the lead";
        b.addEventListener("click", act(() => client.transferLeadership(m.socketId)));
        li.append(b);
      }
      return li;
    }),
  );
}

// ---------------------------------------------------------------- resume after a reload

// The server gives each join a private member token; with it a reloaded
// page takes its own place back (a leader keeps the lead). Kept for this
// tab only, like the session itself.
client.on("memberToken", ({ sessionId, memberToken }) => {
  safeStorage("set", "bandsync.member", JSON.stringify({ sessionId, memberToken }), sessionStorage);
});
function savedToken(sessionId) {
  try {
    const t = JSON.parse(safeStorage("get", "bandsync.member", undefined, sessionStorage) || "null");
    return t?.sessionId === sessionId ? t.memberToken : undefined;
  } catch {
    return undefined;
  }
}
