// BandSync server dashboard: polls GET /metrics (every 2 s) and
// GET /metrics/history (every 5 s) and draws the series on canvases.
// No chart library: a small line/bar renderer below.

const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;
// The history is what shows an alert that lasted one interval: the live
// poll can fall between two.
const HISTORY_MS = 5000;
const WINDOW_MS = 30 * 60_000; // at most the last 30 minutes on screen

const COLORS = { a: "#ffd23f", b: "#5cc8ff", c: "#ff5a5f", d: "#3ddc84", e: "#c792ea" };
const MB = 1024 * 1024;

let history = []; // Sample[] from /metrics/history
let live = []; // points taken from /metrics snapshots since the page loaded
let lastSnapshot = null;

// Each chart: a list of series, each mapping a point to a value.
const CHARTS = {
  connections: { series: [{ label: "connections", color: COLORS.a, v: (p) => p.connections }] },
  messages: {
    series: [
      { label: "total/s", color: COLORS.a, v: (p) => p.mps },
      { label: "in/s", color: COLORS.b, v: (p) => p.inps },
      { label: "out/s", color: COLORS.d, v: (p) => p.outps },
    ],
  },
  // Intervals without samples are gaps, not zeros; the line joins the
  // intervals that had some.
  sync: {
    connectGaps: true,
    series: [
      { label: "p50", color: COLORS.d, v: (p) => (p.sync?.samples ? p.sync.p50Ms : undefined) },
      { label: "p95", color: COLORS.a, v: (p) => (p.sync?.samples ? p.sync.p95Ms : undefined) },
      { label: "p99", color: COLORS.c, v: (p) => (p.sync?.samples ? p.sync.p99Ms : undefined) },
    ],
  },
  // What limits how far apart two devices can be: a device's clock offset
  // (1.8 s on a phone whose clock is wrong) is measured and corrected, so
  // it is no error and plotting it jumped between 0 and 1,800 ms as devices
  // took turns reporting. The error left is bounded by half the round trip
  // of the clock-sync samples, and jitter shows how steady that is.
  clients: {
    connectGaps: true,
    series: [
      { label: "error bound p95 (RTT/2)", color: COLORS.a, v: (p) => (p.client?.reports ? p.client.rtt?.p95Ms / 2 : undefined) },
      { label: "error bound p50", color: COLORS.b, v: (p) => (p.client?.reports ? p.client.rtt?.p50Ms / 2 : undefined) },
      { label: "jitter p95", color: COLORS.e, v: (p) => (p.client?.reports ? p.client.jitter?.p95Ms : undefined) },
    ],
  },
  memory: {
    series: [
      { label: "heap", color: COLORS.a, v: (p) => p.heap / MB },
      { label: "RSS", color: COLORS.b, v: (p) => (p.rss ? p.rss / MB : undefined) },
    ],
  },
  cpu: { series: [{ label: "CPU %", color: COLORS.d, v: (p) => p.cpu }] },
  alerts: {
    series: [
      { label: "active alerts (named above each bar)", color: COLORS.c, v: (p) => p.alerts, bars: true, names: (p) => p.alertTypes },
      { label: "errors/interval", color: COLORS.a, v: (p) => p.errors },
      { label: "rate-limited", color: COLORS.e, v: (p) => p.rateLimited },
    ],
  },
};

/** A history sample as a chart point. */
function fromSample(s) {
  const secs = s.intervalMs > 0 ? s.intervalMs / 1000 : 1;
  return {
    t: s.timestamp,
    connections: s.connections,
    mps: s.messagesPerSecond,
    inps: s.messagesIn / secs,
    outps: s.messagesOut / secs,
    sync: s.syncLatency,
    client: s.clientSync,
    heap: s.heapAllocBytes,
    rss: s.rssBytes,
    cpu: s.cpuPercent,
    alerts: (s.alerts || []).length,
    // A history sample names its alerts' types only.
    alertTypes: s.alerts || [],
    alertList: (s.alerts || []).map((type) => ({ type, severity: type === "high_memory" || type === "store_unavailable" ? "critical" : "warning" })),
    errors: s.errors,
    rateLimited: s.rateLimitViolations,
  };
}

/** A /metrics snapshot as a chart point. */
function fromSnapshot(m) {
  return {
    t: m.timestamp,
    connections: m.connections?.active,
    mps: m.messages?.perSecond,
    inps: m.messages?.inPerSecond,
    outps: m.messages?.outPerSecond,
    sync: m.syncLatency,
    client: m.clientSync,
    heap: m.memory?.heapAllocBytes,
    rss: m.memory?.rssBytes,
    cpu: m.cpu?.percent,
    alerts: (m.alerts || []).length,
    alertTypes: (m.alerts || []).map((a) => a.type),
    alertList: m.alerts || [],
    errors: undefined,
    rateLimited: m.rateLimit?.violationsLastInterval,
  };
}

// The deployer's ADMIN_TOKEN, for the list of sessions: given once as
// /dashboard#token=..., kept for the tab, and taken out of the address bar
// so it is not shared with a screenshot or a bookmark.
const adminToken = (() => {
  const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("bandsync-admin-token", decodeURIComponent(m[1]));
    window.history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("bandsync-admin-token");
})();

async function getJSON(url, { admin = false } = {}) {
  const headers = { Accept: "application/json" };
  if (admin && adminToken) headers.Authorization = `Bearer ${adminToken}`;
  const res = await fetch(url, { headers, cache: "no-store" });
  if (!res.ok) {
    let msg = `${res.status}`;
    try {
      msg += ` ${(await res.json()).error?.message ?? ""}`;
    } catch {
      // not JSON
    }
    throw new Error(`${url}: ${msg}`);
  }
  return res.json();
}

async function pollMetrics() {
  try {
    const m = await getJSON("/metrics");
    lastSnapshot = m;
    live.push(fromSnapshot(m));
    const cutoff = m.timestamp - WINDOW_MS;
    live = live.filter((p) => p.t >= cutoff);
    setStatus("connected", `Live · updated ${new Date(m.timestamp).toLocaleTimeString()}`);
    $("dash-error").textContent = "";
    renderCards(m);
    renderAll();
  } catch (err) {
    setStatus("reconnecting", "Server unreachable");
    $("dash-error").textContent = String(err.message || err);
  }
}

async function pollHistory() {
  try {
    const since = Date.now() - WINDOW_MS;
    const h = await getJSON(`/metrics/history?since=${Math.floor(since)}`);
    history = Array.isArray(h.samples) ? h.samples : [];
    renderAll();
  } catch (err) {
    $("dash-error").textContent = String(err.message || err);
  }
}

function setStatus(state, text) {
  $("dash-status").dataset.state = state;
  $("dash-status-text").textContent = text;
}

function points() {
  // History covers the past; the live points are finer-grained and win
  // from the first of them on.
  const firstLive = live.length ? live[0].t : Infinity;
  return [...history.map(fromSample).filter((p) => p.t < firstLive), ...live];
}

// ---------------------------------------------------------------- cards

const fmt = (v, d = 1) => (v == null || Number.isNaN(v) ? "–" : Number(v).toFixed(d));
const fmtInt = (v) => (v == null ? "–" : Math.round(v).toLocaleString());
const fmtMB = (b) => (b == null ? "–" : `${(b / MB).toFixed(1)} MB`);

function setMetric(name, text) {
  const el = document.querySelector(`[data-metric="${name}"]`);
  if (el) el.textContent = text;
}

function renderCards(m) {
  const up = m.uptimeSeconds ?? 0;
  $("dash-meta").textContent = `instance ${m.instanceId || "?"} · up ${fmtDuration(up)} · interval ${fmtInt(m.intervalMs)} ms`;
  setMetric("connections", fmtInt(m.connections?.active));
  setMetric("connections-sub", `${fmtInt(m.connections?.total)} total · ${fmtInt(m.connections?.rejected)} rejected`);
  setMetric("sessions", fmtInt(m.sessions?.active));
  setMetric("sessions-sub", `${fmtInt(m.sessions?.playing)} playing · ${fmtInt(m.sessions?.members)} members`);
  setMetric("messages", fmt(m.messages?.perSecond));
  setMetric("messages-sub", `${fmt(m.messages?.inPerSecond)} in · ${fmt(m.messages?.outPerSecond)} out`);
  // Latency samples come with pongs and heartbeats, a few a second: show
  // the latest interval that had some rather than an empty one's zeros.
  const lat = m.syncLatency?.samples ? m.syncLatency : [...points()].reverse().find((p) => p.sync?.samples > 0)?.sync;
  setMetric("sync", lat ? `${fmt(lat.p99Ms, 2)} ms` : "–");
  setMetric("sync-sub", lat ? `p50 ${fmt(lat.p50Ms, 2)} · p95 ${fmt(lat.p95Ms, 2)} · n ${fmtInt(lat.samples)}` : "no samples yet");
  // Devices report after each clock-sync round (every ~15 s), so most
  // intervals have none: show the latest interval that had reports.
  const withReports = [...points()].reverse().find((p) => p.client?.reports > 0);
  const cs = withReports?.client;
  setMetric("client-offset", cs ? `${fmt(cs.rtt?.p95Ms / 2, 2)} ms` : "–");
  setMetric(
    "client-offset-sub",
    cs
      ? `p95 of RTT/2 · jitter p95 ${fmt(cs.jitter?.p95Ms, 2)} ms · clocks up to ${fmtOffset(cs.absOffset?.maxMs)} off, corrected · ${fmtInt(cs.reports)} reports at ${new Date(withReports.t).toLocaleTimeString()}`
      : "no device reports yet",
  );
  setMetric("cpu", `${fmt(m.cpu?.percent)} %`);
  setMetric("cpu-sub", `${fmtInt(m.cpu?.numCpu)} CPUs · ${fmtInt(m.runtime?.goroutines)} goroutines`);
  setMetric("memory", fmtMB(m.memory?.heapAllocBytes));
  setMetric("memory-sub", `RSS ${fmtMB(m.memory?.rssBytes)} · GC ${fmtInt(m.runtime?.numGC)}`);
  const alerts = m.alerts || [];
  setMetric("alerts", String(alerts.length));
  setMetric("errors-sub", `${fmtInt(m.errors?.total)} errors · ${fmtInt(m.rateLimit?.violations)} rate-limited`);
  $("card-alerts").classList.toggle("alerting", alerts.length > 0);

  const list = $("alert-list");
  list.replaceChildren(
    ...(alerts.length
      ? alerts.map((a) => {
          const li = document.createElement("li");
          li.className = a.severity === "critical" ? "critical" : "warning";
          li.textContent = `${a.severity?.toUpperCase() || "ALERT"} · ${a.message} (${fmt(a.value, 1)} ${a.unit}, threshold ${fmt(a.threshold, 1)}) since ${new Date(a.since).toLocaleTimeString()}`;
          return li;
        })
      : [Object.assign(document.createElement("li"), { className: "none", textContent: "No active alerts" })]),
  );
}

const fmtOffset = (ms) => (ms == null ? "–" : ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${fmt(ms, 1)} ms`);

const ALERT_NAMES = {
  high_latency: "High sync latency",
  high_memory: "High memory",
  high_cpu: "High CPU",
  connection_errors: "Connection errors",
  rate_limit_violations: "Rate limit",
  store_unavailable: "Redis unavailable",
};
const alertName = (type) => ALERT_NAMES[type] || type;

/** Every alert that fired in the charts' window, newest first, once per run. */
function renderAlertHistory() {
  const runs = [];
  let open = new Map();
  // From the history alone: it has every interval, where the live polls
  // (every 2 s) miss an alert that lasted one 1 s interval.
  for (const p of history.map(fromSample)) {
    const now = new Map();
    for (const a of p.alertList || []) {
      const run = open.get(a.type) || { type: a.type, severity: a.severity, from: p.t, to: p.t, worst: a };
      run.to = p.t;
      if (a.message && !(Math.abs(a.value) <= Math.abs(run.worst.value ?? -Infinity))) run.worst = a;
      now.set(a.type, run);
      if (!open.has(a.type)) runs.push(run);
    }
    open = now;
  }
  const list = $("alert-history");
  list.replaceChildren(
    ...(runs.length
      ? runs.reverse().map((r) => {
          const li = document.createElement("li");
          li.className = r.severity === "critical" ? "critical" : "warning";
          li.dataset.alertType = r.type;
          const b = document.createElement("b");
          b.textContent = alertName(r.type);
          const when = `${new Date(r.from).toLocaleTimeString()}${r.to > r.from ? `–${new Date(r.to).toLocaleTimeString()}` : ""}`;
          li.append(b, ` · ${when}${r.worst.message ? ` · ${r.worst.message}` : ""}`);
          return li;
        })
      : [Object.assign(document.createElement("li"), { className: "none", textContent: "None" })]),
  );
}

// ---------------------------------------------------------------- sessions

async function pollSessions() {
  try {
    const { sessions = [], total = 0 } = await getJSON("/sessions", { admin: true });
    renderSessions(sessions, total);
  } catch (err) {
    // Said where the list would be: the metrics poll clears the page's
    // general error line every second.
    let text = String(err.message || err);
    if (/: 401 /.test(text)) {
      text = adminToken
        ? "The admin token this tab holds was refused: open /dashboard#token=<ADMIN_TOKEN> again."
        : "The list of sessions needs the server's ADMIN_TOKEN: open /dashboard#token=<ADMIN_TOKEN>.";
    }
    const td = cell(text, "muted");
    td.colSpan = 5;
    const tr = document.createElement("tr");
    tr.dataset.error = "true";
    tr.append(td);
    $("session-rows").replaceChildren(tr);
    $("sessions-count").textContent = "";
  }
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function renderSessions(sessions, total) {
  $("sessions-count").textContent = total > sessions.length ? `${sessions.length} of ${total}` : `${total}`;
  const rows = sessions.map((s) => {
    const tr = document.createElement("tr");
    tr.dataset.session = s.sessionId;
    const members = s.members || [];
    const leader = members.find((m) => m.socketId === s.leaderSocketId);
    const names = members.map((m) => `${m.displayName || "anonymous"}${m.connected === false ? " (offline)" : ""}`);
    const tempo = s.tempoBpm ?? s.tempo;
    const bar = Math.floor((s.beat ?? 0) / 4) + 1;
    tr.append(
      cell(s.sessionId, "name"),
      cell(leader ? `${leader.displayName || "anonymous"}${leader.connected === false ? " (offline)" : ""}` : "nobody", leader ? "" : "warn"),
      cell(`${members.length}: ${names.join(", ")}`),
      cell(`${s.isPlaying ? "▶ playing" : "❚❚ stopped"} · ${tempo} BPM · bar ${bar}`, s.isPlaying ? "playing" : ""),
      cell(s.song?.title || s.songId || "—"),
    );
    tr.dataset.playing = String(Boolean(s.isPlaying));
    return tr;
  });
  if (!rows.length) {
    const td = cell("No sessions", "muted");
    td.colSpan = 5;
    rows.push(document.createElement("tr"));
    rows[0].append(td);
  }
  $("session-rows").replaceChildren(...rows);
}

function fmtDuration(s) {
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// ---------------------------------------------------------------- charts

function renderAll() {
  const pts = points();
  renderAlertHistory();
  for (const [name, spec] of Object.entries(CHARTS)) {
    const canvas = document.querySelector(`canvas[data-chart="${name}"]`);
    if (canvas) draw(canvas, spec, pts);
    const legend = document.querySelector(`[data-legend="${name}"]`);
    if (legend && !legend.childElementCount) {
      for (const s of spec.series) {
        const span = document.createElement("span");
        const i = document.createElement("i");
        i.style.background = s.color;
        span.append(i, s.label);
        legend.append(span);
      }
    }
  }
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function draw(canvas, spec, pts) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (!w || !h) return;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const padL = 44;
  const padR = 8;
  const padT = 8;
  const padB = 20;
  const pw = w - padL - padR;
  const ph = h - padT - padB;

  const now = pts.length ? pts[pts.length - 1].t : Date.now();
  const t0 = Math.min(pts.length ? pts[0].t : now, now - 2 * 60_000);
  const span = Math.max(1, now - t0);
  let vmax = 0;
  let count = 0;
  for (const p of pts) {
    for (const s of spec.series) {
      const v = s.v(p);
      if (typeof v === "number" && Number.isFinite(v)) {
        vmax = Math.max(vmax, v);
        count++;
      }
    }
  }
  vmax = niceMax(vmax * 1.1);
  canvas.dataset.points = String(count);
  canvas.dataset.max = String(vmax);

  // Grid and labels.
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#a9b2c3";
  ctx.strokeStyle = "#2c3340";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const y = padT + ph - (ph * i) / 4;
    ctx.beginPath();
    ctx.moveTo(padL, Math.round(y) + 0.5);
    ctx.lineTo(padL + pw, Math.round(y) + 0.5);
    ctx.stroke();
    const val = (vmax * i) / 4;
    ctx.fillText(val >= 100 ? val.toFixed(0) : val >= 10 ? val.toFixed(1) : val.toFixed(2), padL - 4, y);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let i = 0; i <= 3; i++) {
    const t = t0 + (span * i) / 3;
    const x = padL + (pw * i) / 3;
    const ago = Math.round((now - t) / 1000);
    ctx.fillText(ago === 0 ? "now" : ago < 120 ? `-${ago}s` : `-${Math.round(ago / 60)}m`, Math.min(Math.max(x, padL + 14), padL + pw - 14), padT + ph + 4);
  }
  if (!count) {
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText("waiting for data…", padL + pw / 2, padT + ph / 2);
    return;
  }

  const X = (t) => padL + ((t - t0) / span) * pw;
  const Y = (v) => padT + ph - (v / vmax) * ph;
  for (const s of spec.series) {
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.lineWidth = 2;
    if (s.bars) {
      const bw = Math.max(2, Math.min(10, pw / Math.max(pts.length, 1) - 1));
      for (const p of pts) {
        const v = s.v(p);
        if (typeof v === "number" && v > 0) ctx.fillRect(X(p.t) - bw / 2, Y(v), bw, padT + ph - Y(v));
      }
      // Name each run of an alert once, at its first bar: a red bar alone
      // says nothing about what fired.
      if (s.names) {
        ctx.save();
        ctx.fillStyle = "#f4f6fa";
        ctx.textAlign = "left";
        ctx.textBaseline = "bottom";
        let prev = new Set();
        for (const p of pts) {
          const names = new Set(s.names(p) || []);
          const fresh = [...names].filter((n) => !prev.has(n));
          fresh.forEach((n, i) => ctx.fillText(alertName(n), Math.min(X(p.t) + 3, padL + pw - 110), Math.max(padT + 10 + 12 * i, Y(s.v(p)) - 2 - 12 * i)));
          prev = names;
        }
        ctx.restore();
      }
      continue;
    }
    ctx.beginPath();
    let started = false;
    const valid = [];
    for (const p of pts) {
      const v = s.v(p);
      if (typeof v !== "number" || !Number.isFinite(v)) {
        if (!spec.connectGaps) started = false;
        continue;
      }
      valid.push([X(p.t), Y(v)]);
      if (started) ctx.lineTo(X(p.t), Y(v));
      else ctx.moveTo(X(p.t), Y(v));
      started = true;
    }
    ctx.stroke();
    if (valid.length < pw / 8) {
      for (const [x, y] of valid) {
        ctx.beginPath();
        ctx.arc(x, y, 2, 0, Math.PI * 2);
        ctx.fill();
      }
    }
    const lastP = [...pts].reverse().find((p) => Number.isFinite(s.v(p)));
    if (lastP) {
      ctx.beginPath();
      ctx.arc(X(lastP.t), Y(s.v(lastP)), 3, 0, Math.PI * 2);
      ctx.fill();
    }
  }
}

window.addEventListener("resize", renderAll);
pollHistory();
pollMetrics();
pollSessions();
setInterval(pollMetrics, POLL_MS);
setInterval(pollSessions, POLL_MS);
setInterval(pollHistory, HISTORY_MS);
