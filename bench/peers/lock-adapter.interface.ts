/**
 * The one interface every contender implements: our library on each backend, each peer library
 * at its defaults and tuned, and the raw floors. Scenarios only see this.
 */

/** Where the servers of this run listen (127.0.0.1 only). */
export interface BenchEnv {
  /** Such as `redis://127.0.0.1:6379`. */
  readonly redisUrl: string;
  /** Such as `http://127.0.0.1:2379`. */
  readonly etcdHost: string;
  /** The run's Sentinel topology, when a contender on it is selected. */
  readonly sentinel?: {
    readonly sentinels: readonly { readonly host: string; readonly port: number }[];
    readonly name: string;
  };
  /** `redis://127.0.0.1:<port>` of each independent master, when the Redlock contender is selected. */
  readonly redlockUrls?: readonly string[];
  /** The nodes of the run's Redis Cluster, when a contender on it is selected. */
  readonly cluster?: readonly { readonly host: string; readonly port: number }[];
}

/** Which store a contender locks in. */
export type BackendKind = 'redis' | 'etcd' | 'memory';

/**
 * A multi-node Redis topology of our library, started by the bench only when a contender on it
 * is selected: one primary, one replica and three sentinels; a Redis Cluster of three primaries;
 * or five independent masters.
 */
export type BenchTopology = 'redis-sentinel' | 'redis-cluster' | 'redlock-5';

/** Static description of a contender, known without connecting. */
export interface AdapterInfo {
  /** Stable id, such as `ours/redis` or `redlock/tuned`; also the row label of the report. */
  readonly id: string;
  readonly backend: BackendKind;
  /** `ours`, `peer` or `floor`. */
  readonly kind: 'ours' | 'peer' | 'floor';
  /** Settings in force, one line (shown in the report). */
  readonly settings: string;
  /** Locks only exclude callers within one process (memory backend): no multi-process runs. */
  readonly singleProcess?: boolean;
  /**
   * Runs on this topology (its `backend` is then the floor family it is compared with). Measured
   * in the uncontended and handoff scenarios only.
   */
  readonly topology?: BenchTopology;
}

/**
 * A lock contender. `acquire` waits (each adapter bounds its own wait, about 10 s) and resolves a
 * handle, or rejects with {@link BusyError} when it gave up because the lock stayed busy; any
 * other rejection is a failure of the run.
 */
export interface LockAdapter<H = unknown> extends AdapterInfo {
  /** Acquires `key` for `ttl` ms, waiting while it is busy. */
  acquire(key: string, ttl: number): Promise<H>;
  /** Releases a handle returned by `acquire`. */
  release(handle: H): Promise<void>;
  /** Closes every connection the adapter opened. */
  close(): Promise<void>;
  /** Where the adapter was wired from, when it differs from the intended API (shown as a note). */
  readonly note?: string;
}

/** The adapter gave up waiting for a busy lock (its own retry budget ran out). */
export class BusyError extends Error {
  constructor(
    readonly adapter: string,
    readonly key: string,
    cause?: unknown,
  ) {
    super(`${adapter}: "${key}" stayed busy for the whole wait`, { cause });
    this.name = 'BusyError';
  }
}

/** Wait budget every adapter applies to one acquire, in ms. */
export const ACQUIRE_WAIT_MS = 10_000;
