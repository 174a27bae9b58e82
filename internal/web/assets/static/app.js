// BandSync web app: join a session, lead or follow. Every number on screen
// comes from the SDK's clock-synced position and beat, computed for the
// instant each frame is drawn, so every device in the band shows the same
// bar at the same moment.
import { connect, MAX_POSITION_MS } from "../sdk/bandsync.js";
import { SONG } from "./song.js";

const $ = (id) => document.getElementById(id);
const BPB = SONG.beatsPerBar;
const SESSION_RE = /^[A-Za-z0-9_-]{1,64}$/;

const client = connect(location.origin);
window.bandsyncClient = client; // for the curious, from the devtools console

// ---------------------------------------------------------------- chart

const chart = buildChart($("chart-inner"), SONG);

function buildChart(root, song) {
  const lines = [];
  const sections = [];
  let bar = 0;
  for (const sec of song.sections) {
    sec.lines.forEach((ln, i) => {
      const el = document.createElement("div");
      el.className = "chart-line";
      if (i === 0) {
        const label = document.createElement("button");
        label.type = "button";
        label.className = "section-label";
        label.textContent = sec.name;
        label.dataset.bar = String(bar);
        label.title = `Jump to ${sec.name}`;
        el.appendChild(label);
        sections.push({ name: sec.name, bar });
      }
      const bars = document.createElement("div");
      bars.className = "bars";
      const cells = ln.chords.map((c, j) => {
        const cell = document.createElement("div");
        cell.className = "bar";
        cell.textContent = c;
        cell.dataset.bar = String(bar + j);
        bars.appendChild(cell);
        return cell;
      });
      el.appendChild(bars);
      const lyric = document.createElement("div");
      lyric.className = "lyric";
      lyric.textContent = ln.lyric || "\u00a0";
      el.appendChild(lyric);
      root.appendChild(el);
      lines.push({ el, cells, firstBar: bar });
      bar += ln.chords.length;
    });
  }
  return { root, lines, sections, totalBars: bar, tops: [], currentBar: -1 };
}

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
const dots = [...metronome.querySelectorAll(".beat-dot")];

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
  const t = client.now();
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
  renderChart(grid, playing && !countIn);
}
requestAnimationFrame(frame);

// The metronome flash (and optional click) comes from the SDK's beat
// callbacks, scheduled on the synced clock.
let audio = null;
client.onBeat(
  (b) => {
    metronome.classList.add("flash");
    metronome.dataset.flash = String(b.beat);
    setTimeout(() => metronome.classList.remove("flash"), 110);
    if (audio) click(b);
  },
  { beatsPerBar: BPB, lookaheadMs: 60 },
);

function click(b) {
  const delay = Math.max(0, (b.localTime - client.now()) / 1000);
  const at = audio.currentTime + delay;
  const osc = audio.createOscillator();
  const gain = audio.createGain();
  osc.frequency.value = b.beatInBar === 0 ? 1760 : 1175;
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
    if (Ctx) audio = new Ctx();
  }
  ev.currentTarget.textContent = audio ? "Click: on" : "Click: off";
  ev.currentTarget.setAttribute("aria-pressed", String(Boolean(audio)));
});

// ---------------------------------------------------------------- state

function renderState(st) {
  if (!st) return;
  document.body.dataset.role = client.role || "";
  $("role-badge").textContent = client.role === "leader" ? "leader" : "follower";
  $("leader-controls").hidden = client.role !== "leader";
  $("follower-controls").hidden = client.role === "leader";
  $("claim-btn").disabled = Boolean(st.leaderSocketId);
  $("claim-btn").textContent = st.leaderSocketId ? `${leaderName(st)} leads` : "Take the lead";
  const n = st.members?.length ?? 0;
  $("members").textContent = `${n} member${n === 1 ? "" : "s"}`;
  $("members").title = (st.members || []).map((m) => `${m.displayName || "anonymous"}${m.role === "leader" ? " (leader)" : ""}${m.connected === false ? " (offline)" : ""}`).join(", ");
  $("tempo-display").textContent = `${fmtTempo(st.tempoBpm)} BPM`;
  const ti = $("tempo-input");
  if (document.activeElement !== ti) ti.value = fmtTempo(st.tempoBpm);
  const msg = $("message");
  msg.hidden = !st.message;
  msg.textContent = st.message || "";
  $("session-name").textContent = st.sessionId;
  updateWakeLock(st.isPlaying);
}

function leaderName(st) {
  const m = (st.members || []).find((x) => x.socketId === st.leaderSocketId);
  return m?.displayName || "Someone";
}

const fmtTempo = (t) => (Number.isInteger(t) ? String(t) : t.toFixed(1));

client.on("state", renderState);
client.on("role", () => renderState(client.state));

// ---------------------------------------------------------------- connection

const conn = $("conn");
client.on("connection", (c) => {
  conn.dataset.state = c.state;
  document.body.dataset.connection = c.state;
  $("conn-text").textContent =
    c.state === "connected" ? "Connected" : c.state === "reconnecting" ? "Reconnecting…" : c.state === "disconnected" ? "Offline" : "Connecting…";
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
$("session-input").value = params.get("session") || "";
$("name-input").value = params.get("name") || safeStorage("get", "bandsync.name") || "";
if (params.get("role") === "leader") document.querySelector('input[name="role"][value="leader"]').checked = true;

$("join-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const sessionId = $("session-input").value.trim();
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
    await client.join(sessionId, { displayName: displayName || undefined, role: role === "leader" ? "leader" : undefined });
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

function showView(v) {
  document.body.dataset.view = v;
  $("join-view").hidden = v !== "join";
  $("session-view").hidden = v !== "session";
  if (v === "session") requestAnimationFrame(measureChart);
}

// Reloading the page during a gig puts you straight back in (this tab
// only: sessionStorage, not localStorage).
if (params.get("session") && params.get("session") === safeStorage("get", "bandsync.session", undefined, sessionStorage) && params.get("rejoin") !== "0") {
  $("join-form").requestSubmit();
}

$("leave-btn").addEventListener("click", async () => {
  await client.leave().catch(() => {});
  safeStorage("set", "bandsync.session", "", sessionStorage);
  showView("join");
});

// ---------------------------------------------------------------- leader

function act(fn) {
  return async (ev) => {
    const btn = ev?.currentTarget;
    if (btn) btn.disabled = true;
    try {
      await fn(ev);
      $("action-error").textContent = "";
    } catch (err) {
      flashError(describe(err));
    } finally {
      if (btn) btn.disabled = false;
    }
  };
}

let errTimer = null;
function flashError(text) {
  $("action-error").textContent = text;
  clearTimeout(errTimer);
  errTimer = setTimeout(() => ($("action-error").textContent = ""), 5000);
}

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
    default:
      return err?.message || String(err);
  }
}

$("countin-btn").addEventListener("click", act(() => client.countIn({ bars: 1, beatsPerBar: BPB })));
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
$("tempo-input").addEventListener(
  "change",
  act(() => {
    const v = Number($("tempo-input").value);
    if (!(v >= 1 && v <= 300)) throw new Error("Tempo must be 1-300 BPM.");
    return client.setTempo(v);
  }),
);

/** Position (ms) at which the current beat grid reaches `beat`. */
function positionOfBeat(beat) {
  const st = client.state;
  const pos = st.positionMs + ((beat - st.beat) * 60000) / st.tempoBpm;
  return Math.min(MAX_POSITION_MS, Math.max(0, pos));
}

for (const b of document.querySelectorAll("[data-seek-bars]")) {
  b.addEventListener(
    "click",
    act(() => {
      const bar = Math.floor(client.gridBeatAt() / BPB) + Number(b.dataset.seekBars);
      return client.seek(positionOfBeat(Math.max(0, bar) * BPB));
    }),
  );
}
$("chart-inner").addEventListener("click", (ev) => {
  const label = ev.target.closest(".section-label");
  if (!label || client.role !== "leader") return;
  act(() => client.seek(positionOfBeat(Number(label.dataset.bar) * BPB)))();
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
