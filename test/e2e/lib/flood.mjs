// A flooding client, run in a worker thread so that its loop does not
// delay the measuring clients on the main thread. It upgrades one raw
// connection, optionally sends the Socket.IO CONNECT, then writes `frame`
// (one masked client frame, repeated) as fast as the server takes it for
// `ms`, never reading a byte. Posts {bytes, closedEarly} when done.
import { parentPort, workerData } from "node:worker_threads";
import net from "node:net";
import crypto from "node:crypto";

function mask(b0, payload) {
  const key = crypto.randomBytes(4);
  const n = payload.length;
  const head = n < 126 ? Buffer.from([b0, 0x80 | n]) : Buffer.from([b0, 0x80 | 126, n >> 8, n & 255]);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= key[i & 3];
  return Buffer.concat([head, key, body]);
}

const { port, kind, ms, connect } = workerData;
if (kind === "none") {
  // The control: the same measurement with nobody flooding.
  setTimeout(() => parentPort.postMessage({ bytes: 0, closedEarly: false }), ms);
}
const frame = {
  ping: mask(0x89, Buffer.alloc(125, 112)),
  namespace: mask(0x81, Buffer.from("40/" + "x".repeat(100) + ",")),
}[kind];
const batch = frame && Buffer.concat(Array(512).fill(frame));

const sock = kind === "none" ? null : net.connect({ port, host: "127.0.0.1" }, () => {
  sock.setNoDelay(true);
  sock.write(
    "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
  );
  if (connect) sock.write(mask(0x81, Buffer.from("40")));
  // Never read: what the server answers piles up on its side.
  sock.pause();
  let bytes = 0;
  let closed = false;
  const end = Date.now() + ms;
  sock.on("close", () => { closed = true; });
  sock.on("error", () => { closed = true; });
  const pump = () => {
    while (!closed && Date.now() < end) {
      bytes += batch.length;
      if (!sock.write(batch)) {
        sock.once("drain", pump);
        return;
      }
    }
    done();
  };
  let finished = false;
  const done = () => {
    if (finished) return;
    finished = true;
    parentPort.postMessage({ bytes, closedEarly: closed && Date.now() < end });
    sock.destroy();
  };
  setTimeout(done, ms + 1000); // a write that never drains
  pump();
});
