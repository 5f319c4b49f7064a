/**
 * The fault lab's history: one JSON object per line, written by every process of a run (workers,
 * the resource server, the nemesis) and judged afterwards by the checker. Times are `labNow()`:
 * CLOCK_MONOTONIC of the machine in ms, which every process on one machine shares, so events of
 * different processes compare directly (no wall clock, which the lab's clock faults may move).
 */

/** Fields every event has. */
interface EventBase {
  /** `labNow()` when the event happened, ms (fractional). */
  readonly t: number;
  /** Name of the process that logged it: `w0`…, `resource`, `nemesis`. */
  readonly process: string;
}

/** Fields of a client's lock operation. */
interface ClientEventBase extends EventBase {
  /** `<process>/c<n>`: unique in a run. */
  readonly client: string;
  /** Operation number of this client (one acquire and everything under it). */
  readonly op: number;
  /** Keys of the lock, canonical order (as `lock.keys`). */
  readonly keys: readonly string[];
}

/** A client calls `acquire`. */
export interface InvokeEvent extends ClientEventBase {
  readonly event: 'invoke';
  readonly ttl: number;
  readonly wait: number;
}

/** `acquire` resolved: the client holds the lock from now on. */
export interface OkEvent extends ClientEventBase {
  readonly event: 'ok';
  /** `lock.fencingTokens`, in the order of `keys`. */
  readonly fencingTokens: readonly number[];
  /** The lock's validity deadline as the holder knows it, in lab time. */
  readonly validUntil: number;
}

/** `acquire` rejected. */
export interface FailEvent extends ClientEventBase {
  readonly event: 'fail';
  readonly error: string;
  readonly message: string;
}

/**
 * The holder's validity deadline moved (a renewal), in lab time; logged only when `lock.held`
 * read true at `t`, so it proves the lock valid until `validUntil`.
 */
export interface RenewEvent extends ClientEventBase {
  readonly event: 'renew';
  readonly validUntil: number;
}

/** The lock's signal aborted with `LockLostError`: the holder learned it lost the lock. */
export interface LostEvent extends ClientEventBase {
  readonly event: 'lost';
  readonly reason: string;
}

/** The holder starts `release()`: it no longer counts on the lock from here. */
export interface ReleaseEvent extends ClientEventBase {
  readonly event: 'release';
}

/** `release()` settled. `ok: false` with the error's name when it rejected. */
export interface ReleasedEvent extends ClientEventBase {
  readonly event: 'released';
  readonly ok: boolean;
  readonly error?: string;
}

/** The resource server's verdict on one write (one key) of a client's critical section. */
export interface WriteEvent extends ClientEventBase {
  readonly event: 'write';
  readonly key: string;
  readonly fencingToken: number;
  readonly accepted: boolean;
  /** Highest token the server had accepted for the key before this write (0: none). */
  readonly highest: number;
  readonly mode: ResourceMode;
}

/** A run's parameters, first line of the nemesis's file: the checker needs nothing else. */
export interface RunEvent extends EventBase {
  readonly event: 'run';
  readonly backend: string;
  /** Longest an acquire may take beyond its `wait` before it counts as hung. */
  readonly settleBoundMs: number;
  /** Epoch ms at `t`: the shared reference that turns lab times into wall times for people. */
  readonly epochAtT: number;
  /**
   * A holder frozen or blocked for no longer than this (ms) does not count as a paused-holder
   * event: its lock could not have been granted to another meanwhile (the lock's ttl; for etcd,
   * the session lease too). Absent in older histories: every pause counts.
   */
  readonly pausedHolderMinMs?: number;
}

/** A phase of a run begins (faults of one family, or none) or ends. */
export interface PhaseEvent extends EventBase {
  readonly event: 'phase-start' | 'phase-end';
  readonly phase: string;
  /** Fault families injected in the phase (empty: none). */
  readonly families: readonly FaultFamily[];
  readonly mode: ResourceMode;
}

/** The nemesis begins or ends one fault. */
export interface FaultEvent extends EventBase {
  readonly event: 'fault-start' | 'fault-end';
  /** Pairs a start with its end. */
  readonly fault: number;
  /** The action's name (`pause-holder`, `server-kill`, …). */
  readonly action: string;
  readonly family: FaultFamily;
  /** What it targets: a worker's process name, `server`, a proxy's worker. */
  readonly target: string;
}

export type ResourceMode = 'fenced' | 'unfenced';

/** Fault families, as the guarantees are stated per family. */
export type FaultFamily = 'client-pause' | 'network' | 'server' | 'clock';

/**
 * A worker's event loop was blocked (a busy loop the nemesis asked for) from `t` for `ms`, right
 * after `client`'s grant `op` and before its first write.
 */
export interface BlockedEvent extends ClientEventBase {
  readonly event: 'blocked';
  readonly ms: number;
}

export type ClientEvent =
  | InvokeEvent
  | OkEvent
  | FailEvent
  | RenewEvent
  | LostEvent
  | ReleaseEvent
  | ReleasedEvent
  | WriteEvent
  | BlockedEvent;

export type HistoryEvent = ClientEvent | RunEvent | PhaseEvent | FaultEvent;

/** The lab's clock: CLOCK_MONOTONIC in ms, comparable across the processes of one machine. */
export function labNow(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** A lock's `expiresAt` (epoch ms, local estimate) as a lab time, read now. */
export function labTimeOfEpoch(epochMs: number): number {
  return labNow() + (epochMs - Date.now());
}
