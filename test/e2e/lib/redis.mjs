// Private redis-server processes for the e2e tests, and a tiny RESP client
// to look inside them. Never the machine's shared Redis on 6379: every
// server here is started on a free port of 127.0.0.1 without persistence
// (or is the private one scripts/test.sh started, BANDSYNC_TEST_REDIS_URL).
import { spawn, spawnSync } from "node:child_process";
import net from "node:net";
import { freePort } from "./server.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const running = new Set();

process.on("exit", () => {
  for (const r of running) r.proc?.kill("SIGKILL");
});

/** Whether redis-server can be run here. */
export function haveRedisServer() {
  try {
    return spawnSync("redis-server", ["--version"], { stdio: "ignore" }).status === 0;
  } catch {
    return false;
  }
}

/**
 * Sends one command and resolves with its reply: a string, number, null,
 * an array of those, or an Error for an error reply.
 */
export function redisCommand(url, args, timeoutMs = 2000) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: u.hostname, port: Number(u.port || 6379) });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`redis ${args[0]}: no reply within ${timeoutMs} ms`));
    }, timeoutMs);
    const db = u.pathname.replace("/", "");
    const cmds = [];
    if (db && db !== "0") cmds.push(["SELECT", db]);
    cmds.push(args);
    sock.on("connect", () => {
      for (const c of cmds) {
        let out = `*${c.length}\r\n`;
        for (const a of c) {
          const s = String(a);
          out += `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
        }
        sock.write(out);
      }
    });
    let skip = cmds.length - 1;
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const r = parse(buf, 0);
        if (!r) return;
        buf = buf.subarray(r.end);
        if (skip > 0) {
          skip--;
          continue;
        }
        clearTimeout(timer);
        sock.end();
        resolve(r.value);
        return;
      }
    });
    sock.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

function parse(buf, i) {
  const nl = buf.indexOf("\r\n", i);
  if (nl < 0) return null;
  const type = String.fromCharCode(buf[i]);
  const line = buf.toString("utf8", i + 1, nl);
  const next = nl + 2;
  switch (type) {
    case "+":
      return { value: line, end: next };
    case "-":
      return { value: new Error(line), end: next };
    case ":":
      return { value: Number(line), end: next };
    case "$": {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return null;
      return { value: buf.toString("utf8", next, next + n), end: next + n + 2 };
    }
    case "*": {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const out = [];
      let at = next;
      for (let k = 0; k < n; k++) {
        const r = parse(buf, at);
        if (!r) return null;
        out.push(r.value);
        at = r.end;
      }
      return { value: out, end: at };
    }
    default:
      throw new Error(`unexpected RESP type ${type}`);
  }
}

/**
 * Starts a private redis-server on a free port (or `port`). Resolves with
 * { url, port, stop(), start() }: stop() kills it (its data is gone),
 * start() starts it again, empty, on the same port.
 */
export async function startRedis({ port } = {}) {
  port ??= await freePort();
  const r = {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    proc: null,
    async start() {
      if (r.proc) return;
      const proc = spawn(
        "redis-server",
        ["--bind", "127.0.0.1", "--port", String(port), "--save", "", "--appendonly", "no"],
        { stdio: ["ignore", "ignore", "pipe"] },
      );
      r.proc = proc;
      running.add(r);
      proc.on("exit", () => {
        if (r.proc === proc) r.proc = null;
      });
      const deadline = Date.now() + 5000;
      for (;;) {
        try {
          if ((await redisCommand(r.url, ["PING"], 500)) === "PONG") return;
        } catch {
          // not listening yet
        }
        if (Date.now() > deadline) {
          await r.stop();
          throw new Error(`redis-server on port ${port} did not answer PING within 5 s`);
        }
        await sleep(30);
      }
    },
    async stop() {
      const proc = r.proc;
      if (!proc) return;
      const exited = new Promise((res) => proc.once("exit", res));
      proc.kill("SIGKILL");
      await exited;
      r.proc = null;
      running.delete(r);
    },
  };
  await r.start();
  return r;
}

/**
 * The Redis for tests that only read and write: BANDSYNC_TEST_REDIS_URL
 * when set (make test starts one), else a private server started here.
 * Resolves with { url, stop() } (stop is a no-op for the given URL).
 */
export async function testRedis() {
  const given = process.env.BANDSYNC_TEST_REDIS_URL;
  if (given) return { url: given, stop: async () => {} };
  return startRedis();
}
