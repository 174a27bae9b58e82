// The wire vocabulary as the server defines it: internal/protocol writes
// protocol.json (go test ./internal/protocol -update), so the lists the
// tests check coverage against cannot fall behind the server's.
import { readFileSync } from "node:fs";

const vocabulary = JSON.parse(readFileSync(new URL("../../../internal/protocol/protocol.json", import.meta.url), "utf8"));

export const CLIENT_EVENTS = Object.freeze(vocabulary.clientEvents);
export const SERVER_EVENTS = Object.freeze(vocabulary.serverEvents);
export const ERROR_CODES = Object.freeze(vocabulary.errorCodes);
export const SESSION_ID = Object.freeze(vocabulary.sessionId);

// missingFrom returns the names of `all` that `covered` lacks, for an
// assertion that a test's table covers every event.
export const missingFrom = (all, covered) => {
  const have = new Set(covered);
  return all.filter((name) => !have.has(name));
};

// The events songs.test.mjs covers (its refusal table, and the server
// events' payloads); contract.test.mjs covers every other one. Each file
// asserts its share, so an event the server adds fails one of them until
// a test sends or checks it.
export const SONGS_TEST_CLIENT_EVENTS = Object.freeze([
  "add_song", "update_song", "remove_song", "move_song", "select_song", "get_song",
  "set_time_signature", "set_count_in", "transfer_leadership",
]);
export const SONGS_TEST_SERVER_EVENTS = Object.freeze(["song_changed", "song", "session_joined"]);
