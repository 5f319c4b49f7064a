import type { LatencySummary } from '../stats';

/** Sequential acquire + release of distinct keys by one client. */
export interface UncontendedResult {
  readonly adapter: string;
  readonly cycles: number;
  readonly seconds: number;
  /** Interleaved rounds the cycles were spread over. */
  readonly rounds: number;
  /** Median of the rounds' rates. */
  readonly cyclesPerSec: number;
  /** Each round's rate, in round order (ratios to a floor are taken round by round). */
  readonly roundRates: readonly number[];
  readonly acquireMs: LatencySummary;
  readonly releaseMs: LatencySummary;
}

/** Many concurrent callers in one process, each on its own distinct keys (a busy web server). */
export interface ParallelResult {
  readonly adapter: string;
  /** Concurrent acquire + release loops sharing the contender's one client. */
  readonly callers: number;
  readonly cycles: number;
  readonly seconds: number;
  readonly rounds: number;
  /** Median of the rounds' rates. */
  readonly cyclesPerSec: number;
  /** Each round's rate, in round order. */
  readonly roundRates: readonly number[];
  /** Latency of one acquire + release cycle, all rounds pooled. */
  readonly cycleMs: LatencySummary;
}

/** Which contended run: in one process or across processes, with or without think time. */
export interface ContendedVariant {
  readonly processes: number;
  readonly workersPerProcess: number;
  readonly thinkMs: number;
}

/** Many workers on one key, each re-acquiring (after optional think time) once it released. */
export interface ContendedResult extends ContendedVariant {
  readonly adapter: string;
  /** Critical sections completed (records written by workers). */
  readonly grants: number;
  readonly seconds: number;
  readonly grantsPerSec: number;
  readonly waitMs: LatencySummary;
  /** Median time from acquire resolving to release starting (the GET + SET critical section). */
  readonly holdP50Ms: number;
  /**
   * Median time from one grant's release being called to the next grant (in counter order, across
   * processes) resolving: what handing the lock on costs.
   */
  readonly handoffP50Ms: number;
  /**
   * The wait of a worker served in FIFO order behind everyone else: (workers − 1) x (hold p50 +
   * handoff p50).
   */
  readonly idealFifoWaitMs: number;
  /** Share of grants (in counter order) that went to a different worker than the previous one. */
  readonly ownerSwitchPct: number;
  /**
   * Share of grants during whose wait more than workers − 1 other grants were made: served out
   * of FIFO order (someone who asked later was served first). Absent in results of older runs.
   */
  readonly outOfTurnPct?: number;
  /** The most other grants made during one wait (FIFO: at most workers − 1). */
  readonly servedBeforeMax?: number;
  /** Grants whose increment was lost: grants minus the final counter value. */
  readonly lostUpdates: number;
  /** Acquires that gave up (the adapter's own retry budget ran out) and were retried. */
  readonly failedAcquires: number;
}

/** Time from the holder's `release()` returning to the next waiter's `acquire()` resolving. */
export interface HandoffResult {
  readonly adapter: string;
  readonly waiters: number;
  /** Interleaved rounds the samples were collected in. */
  readonly rounds: number;
  readonly latencyMs: LatencySummary;
  /** Samples where the waiter's acquire resolved before the holder's release returned. */
  readonly early: number;
}

/** Many locks held at once by one process, renewal on. */
export interface HeldScaleResult {
  readonly adapter: string;
  readonly locks: number;
  readonly ttlMs: number;
  readonly acquireSeconds: number;
  readonly windowSeconds: number;
  /**
   * Commands executed per second during the window. Redis: every command of INFO commandstats,
   * including those run inside scripts; etcd: every gRPC message received.
   */
  readonly backendOpsPerSec: number | null;
  /**
   * Requests per second sent to the backend during the window, all of it renewal since nothing
   * else runs (Redis: EVALSHA + EVAL calls; etcd: gRPC messages, Txn and LeaseKeepAlive).
   */
  readonly renewOpsPerSec: number | null;
  /** Per-command rates during the window, largest first. */
  readonly byCommand: Readonly<Record<string, number>>;
  readonly lagP50Ms: number;
  readonly lagP99Ms: number;
  readonly lagMaxMs: number;
  readonly rssMb: number;
  readonly heapUsedMb: number;
  /** RSS growth from before the first acquire to the window. */
  readonly rssDeltaMb: number;
  /** Locks no longer held at the end of the window (should be 0). */
  readonly lost: number;
  /**
   * Heap growth per held lock, in bytes: heap used after a full GC with every lock held (and
   * renewed once), less heap used after a full GC before the first acquire, over `locks`. Null
   * when the process has no `gc()` (`--expose-gc`).
   */
  readonly heapPerLockBytes: number | null;
}

/**
 * A queued waiter SIGKILLed in its own process: time from the holder's `release()` returning to
 * the next live waiter's `acquire()` resolving, over a few repetitions on distinct keys.
 */
export interface DeadWaiterResult {
  readonly adapter: string;
  readonly backend: string;
  readonly repetitions: number;
  readonly samplesMs: readonly number[];
  readonly medianMs: number;
  readonly maxMs: number;
  /** What the library promises: Redis claimWindow + one round trip; etcd the session ttl. */
  readonly boundMs: number;
  /** How the bound is made up, with the configured values. */
  readonly bound: string;
  /** Wait of the live waiter: a figure close to it means it gave up, not that it was served. */
  readonly liveWaitMs: number;
  /** Repetitions where the live waiter gave up (its sample is when it gave up). */
  readonly timedOut: number;
}

/** One call against a server frozen with SIGSTOP: how long until it failed. */
export interface FrozenServerResult {
  readonly adapter: string;
  readonly backend: string;
  /** Such as `tryAcquire`, `acquire wait 500`, `queued waiter wait 1000`. */
  readonly case: string;
  readonly waitMs: number;
  readonly commandTimeoutMs: number;
  /** What the library promises: wait + commandTimeout, from the call. */
  readonly boundMs: number;
  /** From the call to its settling (or to giving up on it). */
  readonly elapsedMs: number;
  /** Name of what the call rejected with, or how it resolved or hung. */
  readonly thrown: string;
  /** Whether it rejected with `LockBackendError`, as promised. */
  readonly backendError: boolean;
}

/** A contended result (or failure) labelled with its variant, such as `8w +2ms think`. */
export type ContendedRow = Outcome<ContendedResult & { readonly variant: string }> & {
  readonly variant: string;
};

/** One measurement or the reason it is missing. */
export type Outcome<T> = T | { readonly adapter: string; readonly error: string };

/** Everything one run measured; written to latest.json. */
export interface BenchResults {
  readonly startedAt: string;
  readonly durationSeconds: number;
  readonly quick: boolean;
  readonly machine: {
    readonly node: string;
    readonly cpus: number;
    readonly platform: string;
    readonly redis: string;
    readonly etcd: string;
  };
  readonly settings: Readonly<Record<string, number | string>>;
  readonly adapters: readonly {
    readonly id: string;
    readonly backend: string;
    readonly kind: string;
    readonly settings: string;
    readonly note?: string;
    readonly error?: string;
  }[];
  readonly floors: {
    readonly redisSetPerSec: number;
    readonly etcdPutPerSec: number;
    /** Redis `SET` round trip, p50 ms (sequential, one connection). */
    readonly redisSetP50Ms: number;
    /**
     * Redis pub/sub delivery, p50 ms: `PUBLISH` sent on one connection → message received on a
     * subscribed connection of the same process.
     */
    readonly redisPubSubP50Ms: number;
  };
  readonly uncontended: readonly Outcome<UncontendedResult>[];
  readonly parallel: readonly Outcome<ParallelResult>[];
  readonly contended: readonly ContendedRow[];
  readonly handoff: readonly Outcome<HandoffResult>[];
  readonly heldScale: readonly Outcome<HeldScaleResult>[];
  readonly deadWaiter: readonly Outcome<DeadWaiterResult>[];
  readonly frozenServer: readonly Outcome<FrozenServerResult>[];
}

/** Whether an outcome is a failure. */
export function isError<T extends object>(
  outcome: Outcome<T>,
): outcome is { readonly adapter: string; readonly error: string } {
  return 'error' in outcome;
}
