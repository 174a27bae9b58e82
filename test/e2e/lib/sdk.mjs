// The SDK (sdk/js/bandsync.js) exactly as published. Its one dependency,
// socket.io-client, is resolved from the e2e suite's node_modules (the SDK
// folder has none of its own) by a tiny module-resolution hook, so the SDK
// and the tests share one copy of socket.io-client. The hook must be in
// place before the SDK is loaded, hence a dynamic import: use
// `const { connect } = sdk`.
import { register } from "node:module";

const sdkDir = new URL("../../../sdk/js/", import.meta.url).href;
register(
  "data:text/javascript," +
    encodeURIComponent(`
      let sdkDir, parentURL;
      export async function initialize(d) { sdkDir = d.sdkDir; parentURL = d.parentURL; }
      export async function resolve(specifier, context, next) {
        if (specifier === "socket.io-client" && context.parentURL && context.parentURL.startsWith(sdkDir)) {
          return next(specifier, { ...context, parentURL });
        }
        return next(specifier, context);
      }`),
  { parentURL: import.meta.url, data: { sdkDir, parentURL: import.meta.url } },
);

export const sdk = await import(new URL("bandsync.js", sdkDir).href);
