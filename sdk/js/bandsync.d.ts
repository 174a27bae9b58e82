// Type declarations for @bandsync/sdk 0.1.0 (bandsync.js).
import type { Socket, ManagerOptions, SocketOptions } from "socket.io-client";

export declare const VERSION: string;
/** Largest position the server accepts: 24 h in ms. */
export declare const MAX_POSITION_MS: number;
/** Largest `play` delay the server accepts, in ms. */
export declare const MAX_DELAY_MS: number;

export type Role = "leader" | "follower";
export type ConnectionState = "connecting" | "connected" | "reconnecting" | "disconnected";

/** Stable error codes: the server's (PROTOCOL.md) and the SDK's own. */
export type ErrorCode =
  | "INVALID_PAYLOAD"
  | "INVALID_SESSION_ID"
  | "NOT_IN_SESSION"
  | "NOT_LEADER"
  | "SESSION_FULL"
  | "RATE_LIMITED"
  | "UNKNOWN_EVENT"
  | "PAYLOAD_TOO_LARGE"
  | "INTERNAL"
  | "DISCONNECTED" // the SDK is not connected right now (commands fail fast)
  | "TIMEOUT" // no acknowledgement within ackTimeoutMs
  | "QUANTUM_TOO_LONG" // playOnNextBar: the boundary is more than 5 s away
  | "CLOCK_SYNC_FAILED"
  | (string & {});

export declare class BandSyncError extends Error {
  constructor(code: ErrorCode, message?: string, details?: unknown);
  readonly name: "BandSyncError";
  readonly code: ErrorCode;
  readonly details?: unknown;
}

export interface Member {
  socketId: string;
  displayName: string;
  role: Role;
  joinedAt: number;
  connected: boolean;
}

/** A session snapshot (PROTOCOL.md section 2, plus beat/startsAt/leaderTerm). */
export interface SessionState {
  sessionId: string;
  message: string;
  tempo: number;
  tempoBpm: number;
  isPlaying: boolean;
  /** Position in ms at `serverTimestamp`. */
  position: number;
  positionMs: number;
  leaderSocketId: string | null;
  members: Member[];
  settings: { maxMembers: number };
  memberCount: number;
  createdAt: number;
  lastActiveAt: number;
  /** Server epoch ms at which `position` and `beat` hold. */
  serverTimestamp: number;
  version: number;
  /** Server epoch ms at which the current run starts (a scheduled play), null while paused. */
  startsAt: number | null;
  /** Beat position at `serverTimestamp`. */
  beat: number;
  leaderTerm: number;
}

export interface ScrollTick {
  sessionId: string;
  positionMs: number;
  tempoBpm: number;
  serverTimestamp: number;
  version: number;
  beat: number;
}

export interface SyncStatus {
  /** The offset is bounded from both sides (the first exchange answered). */
  synced: boolean;
  /** Server clock minus this device's clock in use now, ms (drift and slewing included). */
  offsetMs: number;
  /**
   * How far this device's server clock (and so its position and beats) may
   * be from the server's, ms: half the width of the tightest interval the
   * one-way bounds allow, plus what drift could have added since, plus any
   * correction still being slewed in. Infinity before the first exchange.
   * It cannot include a difference between the two directions' minimum
   * delays, which no round trip reveals (docs/sync.md).
   */
  errorMs: number;
  /** Median round trip of the last round, ms. */
  rttMs: number;
  /** Smallest round trip of the last round, ms. */
  rttMinMs: number;
  /** Standard deviation of the last round's round trips, ms. */
  jitterMs: number;
  /** Estimated drift of this device's clock against the server's, ppm (0 until fitted over >= 60 s). */
  driftPpm: number;
  /** Rounds (of samplesPerRound exchanges) completed since the client was created. */
  rounds: number;
  /** Exchanges in the last round. */
  samples: number;
  /** Local time of the last round. */
  lastSyncAt: number | null;
}

export interface BeatInfo {
  /** Integer beat on the session's grid (count-in beats are below the start beat). */
  beat: number;
  /** 0-based position in the bar. */
  beatInBar: number;
  bar: number;
  /** True for beats before the scheduled start. */
  countIn: boolean;
  /** The beat's instant on this device's clock (`client.now()` units). */
  localTime: number;
  /** The beat's instant on the server's clock. */
  serverTime: number;
  /** How late the callback ran relative to its intended moment (localTime - lookaheadMs), ms. */
  lateMs: number;
}

export interface ConnectionEvent {
  state: ConnectionState;
  previous: ConnectionState;
  /** Whether the last (re)connection recovered the previous socket (same id, same role). */
  recovered: boolean;
  reason?: string;
  attempt?: number;
  socketId?: string;
}

export interface RoleEvent {
  role: Role;
  previous: Role | null;
  reason: string | null;
}

export interface ConnectOptions {
  /** socket.io-client's io() to use (default: the one imported from "socket.io-client"). */
  io?: (...args: any[]) => Socket;
  /** Extra options for io(); the SDK sets transports: ["websocket"], forceNew and reconnection. */
  socketOptions?: Partial<ManagerOptions & SocketOptions>;
  /** The local clock, epoch ms (default: performance.timeOrigin + performance.now()). */
  now?: () => number;
  /** clock_sync exchanges per round (at least 8; default 8); a round ends with a `sync` event and a `sync_quality` report. */
  samplesPerRound?: number;
  /** Background exchanges this often while errorMs is over 3 ms (default 150; at least 50). */
  minSampleIntervalMs?: number;
  /** ...and this often once errorMs is within 1 ms (default 1000); a quarter of it in between. */
  maxSampleIntervalMs?: number;
  /** The offset comes from the bounds seen over this window, each loosened by its age, ms (default 600000). */
  windowMs?: number;
  /** Drift is fitted only over at least this baseline, ms (default 60000). */
  minDriftSpanMs?: number;
  /** Drift is clamped to +/- this, ppm (default 100). */
  maxDriftPpm?: number;
  /** Corrections made while playing are slewed at this rate (default 0.01: 10 ms per second). */
  slewRate?: number;
  /** A correction larger than this, ms, is stepped rather than slewed (default 250). */
  stepMs?: number;
  /**
   * scroll_tick rate to ask the server for at join: 0 none, N at most one
   * per N ms (default: not asked, every tick). The clock model takes a
   * downlink bound from every tick; docs/sync.md measures what fewer cost.
   */
  tickIntervalMs?: number | null;
  /** Acknowledgement timeout, ms (default 5000). */
  ackTimeoutMs?: number;
  /** Send `sync_quality` after each round (default true). */
  reportSyncQuality?: boolean;
  reconnectionDelay?: number;
  reconnectionDelayMax?: number;
}

export interface JoinOptions {
  displayName?: string;
  role?: Role;
}

export interface BandSyncEvents {
  state: (state: SessionState, previous: SessionState | null) => void;
  tick: (tick: ScrollTick) => void;
  role: (ev: RoleEvent) => void;
  connection: (ev: ConnectionEvent) => void;
  sync: (status: SyncStatus) => void;
  rejoined: (ev: { recovered: boolean; state: SessionState | null }) => void;
  error: (err: BandSyncError) => void;
}

export declare class BandSyncClient {
  constructor(url: string | undefined, opts?: ConnectOptions);

  /** The underlying socket.io socket. */
  readonly socket: Socket;
  /** Last session state; kept through disconnections. */
  readonly state: SessionState | null;
  readonly sessionId: string | null;
  readonly role: Role | null;
  readonly isLeader: boolean;
  readonly connectionState: ConnectionState;
  /** Whether the last (re)connection was a recovered one. */
  readonly recovered: boolean;
  readonly sync: SyncStatus;

  on<E extends keyof BandSyncEvents>(event: E, listener: BandSyncEvents[E]): this;
  off<E extends keyof BandSyncEvents>(event: E, listener: BandSyncEvents[E]): this;
  once<E extends keyof BandSyncEvents>(event: E, listener: BandSyncEvents[E]): this;

  /** This device's clock, epoch ms with sub-ms resolution. */
  now(): number;
  /** The server's clock now, as estimated by clock sync. */
  serverNow(): number;
  toServerTime(localMs: number): number;
  toLocalTime(serverMs: number): number;
  /** Runs a clock-sync round now. */
  syncClock(): Promise<SyncStatus>;

  /** Playback position (ms) at a local instant (default now). */
  positionAt(localMs?: number): number;
  /** Beat position at a local instant (default now); holds before a scheduled start. */
  beatAt(localMs?: number): number;
  /** Like beatAt, but the grid continues backwards through a count-in. */
  gridBeatAt(localMs?: number): number;
  isCountingIn(localMs?: number): boolean;
  /** Local instant of a grid beat, or null while paused. */
  localTimeOfBeat(beat: number): number | null;
  /**
   * Calls cb on each beat while playing (count-in included), `lookaheadMs`
   * (default 0) before it, so audio can be scheduled at `localTime`; each
   * listener on its own lookahead. Returns an unsubscribe function.
   */
  onBeat(cb: (beat: BeatInfo) => void, opts?: { beatsPerBar?: number; lookaheadMs?: number }): () => void;

  join(sessionId: string, opts?: JoinOptions): Promise<SessionState>;
  leave(): Promise<void>;
  setTempo(tempo: number): Promise<SessionState>;
  play(opts?: { delayMs?: number }): Promise<SessionState>;
  /**
   * Starts on the next boundary of `quantum` beats (default beatsPerBar, default 4) of the
   * grid counted from the server's epoch at the current tempo, at least minLeadMs ahead.
   */
  playOnNextBar(opts?: { quantum?: number; beatsPerBar?: number; minLeadMs?: number }): Promise<SessionState>;
  /** Starts after `bars` bars of count-in (plus leadMs, default 250). */
  countIn(opts?: { bars?: number; beatsPerBar?: number; leadMs?: number }): Promise<SessionState>;
  pause(): Promise<SessionState>;
  seek(positionMs: number): Promise<SessionState>;
  stop(): Promise<SessionState>;
  updateMessage(message: string): Promise<SessionState>;
  claimLeadership(): Promise<SessionState>;
  releaseLeadership(): Promise<SessionState>;
  /** Disconnects for good. */
  close(): void;
}

export declare function connect(url?: string, opts?: ConnectOptions): BandSyncClient;

/**
 * The SDK's clock model (exported for tests and tools): the server-minus-
 * local offset bounded from above by requests (t1 - t0) and from below by
 * server-stamped frames (ts - arrival), over a sliding window.
 */
export declare class ClockModel {
  constructor(opts?: { bucketMs?: number; windowMs?: number; driftWindowMs?: number; minDriftSpanMs?: number; maxDriftPpm?: number; priorDriftPpm?: number; contradictionMs?: number });
  readonly ready: boolean;
  /** Fitted drift, server ms per local ms minus 1. */
  readonly drift: number;
  /** Times the model saw proof that the offset stepped and started again. */
  readonly steps: number;
  reset(): void;
  /** theta <= upper, from a request sent at local `at`. Returns whether it tightened a bound. */
  addUpper(upper: number, at: number): boolean;
  /** theta >= lower, from a frame that arrived at local `at`. */
  addLower(lower: number, at: number): boolean;
  addExchange(x: { t0: number; t1: number; t2: number; t3: number }): boolean;
  estimate(at: number): { offset: number; errorMs: number; lower: number; upper: number } | null;
  fitDrift(): void;
}

/** A local-to-server mapping that slews towards new estimates instead of jumping. */
export declare class SlewedClock {
  constructor(opts?: { rate?: number; stepMs?: number });
  offsetAt(localMs: number): number;
  pendingAt(localMs: number): number;
  retarget(nowMs: number, base: number, drift: number, slew?: boolean): void;
  toServer(localMs: number): number;
  toLocal(serverMs: number): number;
}
/** The SDK's default local clock: performance.timeOrigin + performance.now(), epoch ms. */
export declare function localNow(): number;
/** Ms from serverNowMs to the next `quantum`-beat boundary of the epoch grid at `tempo`, at least minLeadMs. */
export declare function delayToNextBoundary(serverNowMs: number, tempo: number, quantum: number, minLeadMs?: number): number;

declare const _default: {
  connect: typeof connect;
  localNow: typeof localNow;
  BandSyncClient: typeof BandSyncClient;
  BandSyncError: typeof BandSyncError;
  delayToNextBoundary: typeof delayToNextBoundary;
  VERSION: string;
};
export default _default;

// ------------------------------------------- songs, handover and resume
// PROTOCOL.md sections 8 and 9. Declared by interface merging, apart from
// the declarations above.

/** The error codes of songs, on top of ErrorCode's. */
export type SongErrorCode = "SONG_NOT_FOUND" | "LIBRARY_FULL";

export interface TimeSignature {
  /** 1-16 */
  beatsPerBar: number;
  /** 1, 2, 4, 8 or 16 */
  beatUnit: number;
}

/** A song of the setlist: everything but its chart. */
export interface SongSummary {
  songId: string;
  title: string;
  /** "" when the chart names none. */
  artist: string;
  key: string;
  /** The chart's {tempo}, null when it names none. */
  tempo: number | null;
  /** The chart's {time}, null when it names none. */
  timeSignature: TimeSignature | null;
  /** Goes up with every update_song. */
  version: number;
}

/** A song with its ChordPro text, exactly as it was added. */
export interface Song extends SongSummary {
  chordpro: string;
}

export interface SessionState {
  /** In play order; charts are fetched with getSong. */
  setlist: SongSummary[];
  songId: string | null;
  timeSignature: TimeSignature;
  /** Bars of count-in before a scheduled start, 0-4. */
  countInBars: number;
}

export interface JoinOptions {
  /** This device's token from an earlier join: take that member's place back. */
  memberToken?: string;
}

export interface BandSyncEvents {
  /** This device's private token for the session: keep it (e.g. sessionStorage) to resume after a reload. */
  memberToken: (ev: { sessionId: string; memberToken: string }) => void;
}

export interface BandSyncClient {
  /** The private token of the last join; sent again on a reconnect that was not recovered. */
  readonly memberToken: string | undefined;
  /** join() in the place of the member holding memberToken; an ordinary join when it matches no one. */
  resume(sessionId: string, memberToken: string, opts?: JoinOptions): Promise<SessionState>;
  /** Leader: parses and appends a ChordPro chart (64 KB at most, {title} required). */
  addSong(chordpro: string): Promise<SongSummary>;
  updateSong(songId: string, chordpro: string): Promise<SessionState>;
  removeSong(songId: string): Promise<SessionState>;
  /** index is 0-based and clamped. */
  moveSong(songId: string, index: number): Promise<SessionState>;
  /** Playback stops at 0; the chart's tempo and time signature apply. */
  selectSong(songId: string): Promise<SessionState>;
  getSong(songId: string): Promise<Song>;
  setTimeSignature(beatsPerBar: number, beatUnit: number): Promise<SessionState>;
  setCountIn(bars: number): Promise<SessionState>;
  transferLeadership(socketId: string): Promise<SessionState>;
}
