// Joins a band on a running server and stays until the server closes the
// socket, as a phone would during a deploy (scripts/deploy-test.sh stops the
// container with SIGTERM meanwhile). Prints "joined" once in the session and
// exits 0 when the server's drain closes the connection.
//
//   URL=http://127.0.0.1:3001 node container-smoke.mjs
import assert from "node:assert/strict";
import { connect, emitAck } from "./lib/client.mjs";

const url = process.env.URL;
assert.ok(url, "set URL");
const socket = await connect(url, { reconnection: false }, 10_000);
const r = await emitAck(socket, "join_session", { sessionId: "container-smoke", displayName: "drummer" }, 5000);
assert.equal(r.ok, true, `join_session: ${JSON.stringify(r)}`);
assert.equal((await emitAck(socket, "play", { sessionId: "container-smoke" }, 5000)).ok, true);
console.log("joined", socket.id);
const reason = await new Promise((resolve) => socket.on("disconnect", resolve));
console.log("disconnected:", reason);
// A drain closes the transport so the client reconnects elsewhere; it must
// not be a deliberate client-side close.
assert.notEqual(reason, "io client disconnect");
process.exit(0);
