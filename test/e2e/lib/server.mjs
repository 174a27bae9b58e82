// Harness: build the BandSync server binary once per process and start
// throw-away instances of it on free ports of 127.0.0.1.
//
//   const srv = await startServer({ env: { SOCKET_PING_INTERVAL: "300" } });
//   ... srv.url, srv.port, srv.logs() ...
//   const { code, signal, logs } = await srv.stop();
//
// BANDSYNC_BIN=/path/to/bandsync skips the build (scripts/test.sh builds once
// for the whole suite). BANDSYNC_E2E_RACE=0 builds without -race.
// BANDSYNC_PLAIN_BIN is a build without -race for the tests whose figures
// measure the server (plainServer); without it they build one.
import { spawn, execFile } from "node:child_process";
import { mkdtempSync, rmSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

/** The repository root: test/e2e is two levels below it. */
export const repoRoot = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "..",
  "..",
  "..",
);

// Build directories made by this process, removed when it exits.
const buildDirs = [];
// Servers run in an empty directory so that a developer's ./.env does not
// change what the tests see.
let runDir = null;

process.on("exit", () => {
  for (const d of buildDirs) rmSync(d, { recursive: true, force: true });
  if (runDir) rmSync(runDir, { recursive: true, force: true });
});

/**
 * The server binary named by the environment variable envVar, or else one
 * built from ./cmd/bandsync (with -race when race is set) into a
 * directory of this process's own.
 */
async function serverBinary(envVar, race) {
  const given = process.env[envVar];
  if (given) {
    if (!existsSync(given)) throw new Error(`${envVar}=${given} does not exist`);
    return given;
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), "bandsync-e2e-"));
  buildDirs.push(dir);
  const bin = path.join(dir, "bandsync");
  const args = ["build", ...(race ? ["-race"] : []), "-o", bin, "./cmd/bandsync"];
  try {
    await execFileP("go", args, { cwd: repoRoot, maxBuffer: 16 << 20 });
  } catch (err) {
    throw new Error(`go ${args.join(" ")} failed in ${repoRoot}:\n${err.stderr || err.message}`);
  }
  return bin;
}

let binaryPromise = null;
let plainPromise = null;

/** Builds ./cmd/bandsync once per process; resolves with the binary's path. */
export function buildServer() {
  binaryPromise ??= serverBinary("BANDSYNC_BIN", process.env.BANDSYNC_E2E_RACE !== "0");
  return binaryPromise;
}

/**
 * Resolves with a server binary built without the race detector, for the
 * tests whose figures measure the server: under -race every goroutine runs
 * several times slower, and on a busy 2-CPU machine that is measured, not
 * the server. BANDSYNC_PLAIN_BIN names one (scripts/test.sh builds it
 * once); with BANDSYNC_E2E_RACE=0 the shared build is already plain.
 */
export function plainServer() {
  plainPromise ??=
    process.env.BANDSYNC_E2E_RACE === "0" && !process.env.BANDSYNC_PLAIN_BIN
      ? buildServer()
      : serverBinary("BANDSYNC_PLAIN_BIN", false);
  return plainPromise;
}

/** Resolves with a TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * A plain HTTP request on a fresh connection (no keep-alive, so it leaves no
 * idle connection, and no goroutine, behind on the server).
 * Resolves with { status, headers, body, json() }.
 */
export function httpGet(url, { headers = {}, timeoutMs = 3000, method = "GET" } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        resolve({
          status: res.statusCode,
          headers: res.headers,
          body,
          json() {
            try {
              return JSON.parse(body);
            } catch {
              throw new Error(`${method} ${url}: body is not JSON: ${body.slice(0, 300)}`);
            }
          },
        });
      });
      res.on("error", reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${url}: no answer in ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const running = new Set();

/**
 * Starts the server on a free port with PORT, HOST=127.0.0.1, LOG_LEVEL=debug
 * and `env` on top of this process's environment (minus any Redis settings:
 * the tests never touch the machine's shared Redis unless `env` asks for one).
 * Resolves once GET /health answers with any status (10 s at most).
 */
export async function startServer({ env = {}, name = "server", healthTimeoutMs = 10_000, bin: givenBin } = {}) {
  // `bin` runs another build of the server (e.g. one without -race for timing
  // measurements) instead of the shared one.
  const bin = givenBin ?? (await buildServer());
  let lastErr;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(bin, env, name, healthTimeoutMs);
    } catch (err) {
      lastErr = err;
      // Only a lost race for the port is worth another try.
      if (!/address already in use/i.test(err.message)) throw err;
    }
  }
  throw lastErr;
}

/** Server logs are kept here after stop() (git-ignored), for CI post-mortems. */
export const artifactsDir = path.join(repoRoot, "test", "e2e", "artifacts");

function saveLogs(name, port, text) {
  try {
    mkdirSync(artifactsDir, { recursive: true });
    writeFileSync(path.join(artifactsDir, `${name}-${port}.log`), text);
  } catch {
    // best effort
  }
}

async function startOnce(bin, env, name, healthTimeoutMs) {
  const port = await freePort();
  const baseEnv = { ...process.env };
  for (const k of ["REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DB", "PORT", "HOST"]) {
    delete baseEnv[k];
  }
  const fullEnv = { ...baseEnv, PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: "debug", ...env };
  runDir ??= mkdtempSync(path.join(os.tmpdir(), "bandsync-e2e-run-"));
  const proc = spawn(bin, [], { cwd: runDir, env: fullEnv, stdio: ["ignore", "pipe", "pipe"] });

  const chunks = [];
  proc.stdout.on("data", (c) => chunks.push(c));
  proc.stderr.on("data", (c) => chunks.push(c));
  const logs = () => Buffer.concat(chunks).toString("utf8");

  let exited = null;
  const exitPromise = new Promise((resolve) => {
    // "close" (not "exit"): fires once the output pipes are drained too.
    proc.on("close", (code, signal) => {
      if (exited) return;
      exited = { code, signal };
      saveLogs(name, port, logs());
      running.delete(server);
      resolve(exited);
    });
    proc.on("error", (err) => {
      if (exited) return;
      exited = { code: null, signal: null, error: err };
      running.delete(server);
      resolve(exited);
    });
  });

  const url = `http://127.0.0.1:${port}`;
  const server = {
    name,
    url,
    port,
    proc,
    env: fullEnv,
    logs,
    /** Last `n` log lines, for failure messages. */
    tail(n = 40) {
      return logs().split("\n").slice(-n).join("\n");
    },
    get exited() {
      return exited;
    },
    /**
     * Stops the server (SIGTERM by default; SIGKILL after `killAfterMs`).
     * Resolves with { code, signal, logs }. Safe to call twice.
     */
    async stop(signal = "SIGTERM", { killAfterMs = 15_000 } = {}) {
      if (!exited) {
        proc.kill(signal);
        const timer = setTimeout(() => {
          if (!exited) proc.kill("SIGKILL");
        }, killAfterMs);
        await exitPromise;
        clearTimeout(timer);
      }
      return { ...exited, logs: logs() };
    },
  };
  running.add(server);

  const deadline = Date.now() + healthTimeoutMs;
  for (;;) {
    if (exited) {
      throw new Error(
        `server exited before answering /health (code ${exited.code}, signal ${exited.signal}` +
          `${exited.error ? `, ${exited.error.message}` : ""}); output:\n${logs()}`,
      );
    }
    try {
      await httpGet(`${url}/health`, { timeoutMs: 1000 });
      return server;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await server.stop("SIGKILL");
      throw new Error(`server did not answer GET /health within ${healthTimeoutMs} ms; output:\n${logs()}`);
    }
    await sleep(50);
  }
}

/** Stops every server this process started that is still running. */
export async function stopAllServers() {
  await Promise.all([...running].map((s) => s.stop()));
}

/**
 * Throws when a server's output shows a data race (from the -race build) or a
 * Go panic: either is a server bug, whatever the tests saw on the wire.
 */
export function assertCleanLogs(logs, label = "server") {
  const race = logs.indexOf("WARNING: DATA RACE");
  if (race >= 0) {
    throw new Error(`${label} reported a data race:\n${logs.slice(race, race + 6000)}`);
  }
  const panic = logs.search(/^(panic: |fatal error: )/m);
  if (panic >= 0) {
    throw new Error(`${label} panicked:\n${logs.slice(panic, panic + 6000)}`);
  }
}

/** GET /metrics as JSON (throws unless 200). */
export async function metrics(server) {
  const res = await httpGet(`${server.url}/metrics`, { headers: { Accept: "application/json" } });
  if (res.status !== 200) throw new Error(`GET /metrics: status ${res.status}: ${res.body.slice(0, 300)}`);
  return res.json();
}

/** GET /metrics and return runtime.goroutines (throws when absent). */
export async function goroutines(server) {
  const m = await metrics(server);
  const n = m?.runtime?.goroutines;
  if (typeof n !== "number") {
    throw new Error(`GET /metrics has no numeric runtime.goroutines: ${JSON.stringify(m).slice(0, 500)}`);
  }
  return n;
}
