// A TCP proxy on a free loopback port between a browser and the server,
// for the network a band really has: it can add delay each way, and it can
// stop forwarding without closing anything (both directions stop being
// read, as when Wi-Fi stalls), then carry on.
import net from "node:net";

export async function startProxy(targetPort, { delayMs = 0 } = {}) {
  const pairs = new Set();
  let cut = false;
  let dropped = false;
  const forward = (from, to) =>
    from.on("data", (d) => {
      if (delayMs > 0) setTimeout(() => to.writable && to.write(d), delayMs);
      else to.write(d);
    });
  const server = net.createServer((down) => {
    if (dropped) {
      down.destroy();
      return;
    }
    const up = net.connect(targetPort, "127.0.0.1");
    down.setNoDelay(true);
    up.setNoDelay(true);
    const pair = { down, up };
    pairs.add(pair);
    forward(down, up);
    forward(up, down);
    const end = () => {
      down.destroy();
      up.destroy();
      pairs.delete(pair);
    };
    down.on("error", end).on("close", end);
    up.on("error", end).on("close", end);
    if (cut) {
      down.pause();
      up.pause();
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    /** Stops forwarding; nothing is closed. */
    cut() {
      cut = true;
      for (const { down, up } of pairs) {
        down.pause();
        up.pause();
      }
    },
    /** Closes every connection and refuses new ones: the network is gone. */
    drop() {
      dropped = true;
      for (const { down, up } of pairs) {
        down.destroy();
        up.destroy();
      }
    },
    /** Forwards again, what was held first; accepts connections again. */
    restore() {
      cut = false;
      dropped = false;
      for (const { down, up } of pairs) {
        down.resume();
        up.resume();
      }
    },
    close() {
      for (const { down, up } of pairs) {
        down.destroy();
        up.destroy();
      }
      return new Promise((r) => server.close(r));
    },
  };
}
