// Client helpers: the official socket.io-client (the judge of compatibility)
// and a raw Engine.IO-over-WebSocket client for input no real client sends.
import { io } from "socket.io-client";
import WebSocket from "ws";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export { sleep };

const openSockets = new Set();

/**
 * Connects the official client over WebSocket only and resolves on `connect`
 * (rejects on `connect_error` or after `timeoutMs`). Each call gets its own
 * connection (forceNew). Options go to io() unchanged.
 */
export function connect(url, opts = {}, timeoutMs = 5000) {
  const socket = io(url, {
    transports: ["websocket"],
    forceNew: true,
    timeout: timeoutMs,
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
    ...opts,
  });
  openSockets.add(socket);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      socket.close();
      reject(new Error(`socket.io-client: no connect to ${url} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onConnect = () => {
      cleanup();
      resolve(socket);
    };
    const onError = (err) => {
      cleanup();
      socket.close();
      reject(new Error(`socket.io-client: connect_error from ${url}: ${err?.message ?? err}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.off("connect_error", onError);
    };
    socket.on("connect", onConnect);
    socket.on("connect_error", onError);
  });
}

/** Closes every official client opened through connect(). */
export function closeAllClients() {
  for (const s of openSockets) s.close();
  openSockets.clear();
}

/**
 * Resolves with the first argument of the next `event` on `socket` that
 * satisfies `where` (default: any); rejects after `timeoutMs`.
 */
export function once(socket, event, timeoutMs = 2000, where = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, handler);
      reject(new Error(`no '${event}' event${where.name ? ` matching ${where.name}` : ""} within ${timeoutMs} ms`));
    }, timeoutMs);
    const handler = (...args) => {
      let ok;
      try {
        ok = where(...args);
      } catch {
        ok = false;
      }
      if (!ok) return;
      clearTimeout(timer);
      socket.off(event, handler);
      resolve(args[0]);
    };
    socket.on(event, handler);
  });
}

/** Emits `event` with `payload` and resolves with the ack (rejects after timeoutMs). */
export async function emitAck(socket, event, payload, timeoutMs = 2000) {
  try {
    return await socket.timeout(timeoutMs).emitWithAck(event, payload);
  } catch (err) {
    throw new Error(`no ack for '${event}' within ${timeoutMs} ms (${err?.message ?? err})`);
  }
}

/** Records every `event` received on `socket` (first argument) into an array. */
export function collect(socket, event) {
  const got = [];
  socket.on(event, (arg) => got.push(arg));
  return got;
}

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes. */
export async function waitUntil(fn, timeoutMs = 2000, what = "condition", stepMs = 20) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(stepMs);
  }
}

// ---------------------------------------------------------------------------
// Raw Engine.IO client
// ---------------------------------------------------------------------------

/** Parses a Socket.IO packet carried in an Engine.IO message frame ("4..."). */
export function parseSocketIO(text) {
  if (typeof text !== "string" || text[0] !== "4" || text.length < 2) return null;
  const m = /^4(\d)(?:(\/[^,]*),)?(\d*)([\s\S]*)$/.exec(text);
  if (!m) return null;
  const [, type, nsp = "/", id, rest] = m;
  let data;
  try {
    data = rest === "" ? undefined : JSON.parse(rest);
  } catch {
    data = undefined;
  }
  return { type: Number(type), nsp, id: id === "" ? null : Number(id), data };
}

export function wsUrl(httpUrl, query = { EIO: "4", transport: "websocket" }, path = "/socket.io/") {
  const u = new URL(httpUrl);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  u.pathname = path;
  u.search = new URLSearchParams(query).toString();
  return u.toString();
}

const openRaw = new Set();

/**
 * A hand-driven Engine.IO 4 client over `ws`.
 *
 * Options:
 *   query              URL query (default EIO=4, transport=websocket)
 *   perMessageDeflate  offer permessage-deflate (default true, as ws does)
 *   answerPings        reply "3" to every "2" (default true; setAnswerPings())
 *   namespace          send "40" after the open packet and wait for the
 *                      CONNECT reply (default true)
 *   auth               CONNECT payload, e.g. {pid, offset}
 *   headers            extra upgrade request headers
 *   timeoutMs          for the open/connect steps (default 3000)
 */
export async function rawConnect(url, opts = {}) {
  const c = new RawClient(url, opts);
  openRaw.add(c);
  await c.ready;
  return c;
}

/** Closes every raw client still open. */
export function closeAllRaw() {
  for (const c of openRaw) c.terminate();
  openRaw.clear();
}

export class RawClient {
  constructor(url, opts = {}) {
    const {
      query = { EIO: "4", transport: "websocket" },
      perMessageDeflate = true,
      answerPings = true,
      namespace = true,
      auth,
      headers = {},
      timeoutMs = 3000,
    } = opts;
    this.url = wsUrl(url, query);
    this.answerPings = answerPings;
    /** Every frame received: {text, data, isBinary, size, at}. */
    this.frames = [];
    this.handshake = null;
    this.connectPacket = null;
    this.upgradeHeaders = null;
    this.closeInfo = null;
    this.pingsReceived = 0;
    this._waiters = new Set();
    this._socket = null;

    this.ws = new WebSocket(this.url, { perMessageDeflate, headers, maxPayload: 64 << 20 });
    this.ws.on("upgrade", (res) => {
      this.upgradeHeaders = res.headers;
      this._socket = res.socket;
    });
    this.closed = new Promise((resolve) => {
      this.ws.on("close", (code, reason) => {
        this.closeInfo = { code, reason: reason.toString(), at: Date.now() };
        openRaw.delete(this);
        for (const w of this._waiters) w.onClose();
        resolve(this.closeInfo);
      });
    });
    this.ws.on("error", (err) => {
      this.lastError = err;
    });
    this.ws.on("message", (data, isBinary) => {
      const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
      const frame = {
        text: isBinary ? null : buf.toString("utf8"),
        data: buf,
        isBinary,
        size: buf.length,
        at: Date.now(),
      };
      this.frames.push(frame);
      if (frame.text === "2") {
        this.pingsReceived++;
        if (this.answerPings) this.ws.send("3");
      }
      for (const w of this._waiters) w.check(frame, this.frames.length - 1);
    });

    this.ready = (async () => {
      const open = await this.waitFor((f) => f.text?.[0] === "0", timeoutMs, 0, "Engine.IO open packet");
      this.openedAt = open.at;
      this.handshake = JSON.parse(open.text.slice(1));
      if (namespace) {
        const mark = this.mark();
        this.send(auth ? `40${JSON.stringify(auth)}` : "40");
        const f = await this.waitFor(
          (fr) => fr.text?.startsWith("40") || fr.text?.startsWith("44"),
          timeoutMs,
          mark,
          "Socket.IO CONNECT reply",
        );
        this.connectPacket = parseSocketIO(f.text);
        if (this.connectPacket.type !== 0) {
          throw new Error(`namespace connect refused: ${f.text}`);
        }
      }
    })();
    // Avoid an unhandled rejection when nobody awaits `ready`.
    this.ready.catch(() => {});
  }

  /** Index to pass as `since` so that only frames received after now match. */
  mark() {
    return this.frames.length;
  }

  setAnswerPings(v) {
    this.answerPings = v;
  }

  /** Raw bytes read from the TCP socket so far (frames as on the wire). */
  bytesRead() {
    return this._socket ? this._socket.bytesRead : 0;
  }

  send(data, { binary = false, compress } = {}) {
    this.ws.send(data, { binary, compress });
  }

  /** Sends a Socket.IO EVENT: 42[ackId]["event", payload]. */
  emit(event, payload, ackId) {
    const args = payload === undefined ? [event] : [event, payload];
    this.send(`42${ackId ?? ""}${JSON.stringify(args)}`);
  }

  /**
   * Resolves with the first frame at index >= `since` that satisfies `pred`;
   * rejects after `timeoutMs` or when the connection closes first.
   */
  waitFor(pred, timeoutMs = 2000, since = 0, what = "matching frame") {
    for (let i = since; i < this.frames.length; i++) {
      if (safe(pred, this.frames[i])) return Promise.resolve(this.frames[i]);
    }
    if (this.closeInfo) {
      return Promise.reject(new Error(`connection already closed (${this.closeInfo.code}) before ${what}; ${this.describe()}`));
    }
    return new Promise((resolve, reject) => {
      const w = {
        check: (frame, idx) => {
          if (idx >= since && safe(pred, frame)) {
            done();
            resolve(frame);
          }
        },
        onClose: () => {
          done();
          reject(new Error(`connection closed (code ${this.closeInfo.code}) while waiting for ${what}; ${this.describe()}`));
        },
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no ${what} within ${timeoutMs} ms; ${this.describe()}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this._waiters.delete(w);
      };
      this._waiters.add(w);
    });
  }

  /** Socket.IO EVENT packets (type 2) received, parsed: {name, args, index}. */
  events(since = 0) {
    const out = [];
    for (let i = since; i < this.frames.length; i++) {
      const p = parseSocketIO(this.frames[i].text);
      if (p && p.type === 2 && Array.isArray(p.data)) out.push({ name: p.data[0], args: p.data.slice(1), index: i });
    }
    return out;
  }

  /** Resolves with the first argument of the next `name` event after `since`. */
  async waitForEvent(name, { since = 0, timeoutMs = 2000, where = () => true } = {}) {
    const f = await this.waitFor(
      (fr) => {
        const p = parseSocketIO(fr.text);
        return p && p.type === 2 && Array.isArray(p.data) && p.data[0] === name && where(p.data[1]);
      },
      timeoutMs,
      since,
      `'${name}' event`,
    );
    return parseSocketIO(f.text).data[1];
  }

  /** Resolves with the ACK (43<id>[...]) data array for `id`. */
  async waitForAck(id, { since = 0, timeoutMs = 2000 } = {}) {
    const f = await this.waitFor(
      (fr) => {
        const p = parseSocketIO(fr.text);
        return p && p.type === 3 && p.id === id;
      },
      timeoutMs,
      since,
      `ack ${id}`,
    );
    return parseSocketIO(f.text).data;
  }

  /** Last frames received, for failure messages. */
  describe(n = 8) {
    const last = this.frames.slice(-n).map((f) => (f.isBinary ? `<binary ${f.size}B>` : JSON.stringify(f.text.slice(0, 200))));
    return `last frames: [${last.join(", ")}]${this.closeInfo ? ` closed ${this.closeInfo.code}` : ""}`;
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Closes with a normal close handshake and waits for the close. */
  async close() {
    if (!this.closeInfo) this.ws.close(1000);
    const timer = setTimeout(() => this.ws.terminate(), 2000);
    await this.closed;
    clearTimeout(timer);
  }

  terminate() {
    if (!this.closeInfo) this.ws.terminate();
  }
}

function safe(pred, frame) {
  try {
    return Boolean(pred(frame));
  } catch {
    return false;
  }
}

/**
 * Attempts a WebSocket upgrade and reports how the server answered without
 * keeping the connection: {status, headers, body} (status 101 on success).
 */
export function rawUpgrade(url, query, { timeoutMs = 3000 } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(url, query));
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`upgrade to ${wsUrl(url, query)}: no answer in ${timeoutMs} ms`));
    }, timeoutMs);
    ws.on("unexpected-response", (req, res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") });
        req.destroy();
      });
    });
    ws.on("upgrade", (res) => {
      clearTimeout(timer);
      resolve({ status: 101, headers: res.headers, body: "" });
      ws.terminate();
    });
    ws.on("error", (err) => {
      clearTimeout(timer);
      // An error after a resolved answer is only the aborted connection.
      reject(err);
    });
  });
}
