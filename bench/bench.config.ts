import type { BackendKind } from './peers/lock-adapter.interface';
import type { ContendedVariant } from './report/results.types';
import type { ContendedConfig } from './scenarios/contended.scenario';
import type { DeadWaiterConfig } from './scenarios/dead-waiter.scenario';
import type { FrozenServerConfig } from './scenarios/frozen-server.scenario';
import type { HandoffConfig } from './scenarios/handoff.scenario';
import type { ParallelConfig } from './scenarios/parallel.scenario';
import type { UncontendedConfig } from './scenarios/uncontended.scenario';

/**
 * Every bound of one run. Full: about 9 minutes including the fault scenarios on this shared
 * 2-core machine (545 s in a loaded run: the held-lock rows at 100,000 locks take about 40 s
 * each, most of it the wait for a renewal period at the default ttl); `BENCH_QUICK=1`: about 1
 * minute plus one repetition of the fault scenarios.
 *
 * Environment:
 * - `BENCH_QUICK=1`: the smoke run (results to $BENCH_OUT or a temporary directory).
 * - `BENCH_ONLY=<regex>`: only the contenders whose id matches (the fault scenarios run for the
 *   backends whose `ours/<backend>` matches).
 * - `BENCH_ONLY=faults`: only the fault scenarios (dead waiter, frozen server) on both backends,
 *   no other scenario and no floors; written to faults.md / faults.json (never latest.*, which
 *   stay the record of a full run), in bench/results or $BENCH_OUT. About 1.5 minutes on a
 *   library that still has the slow fault paths, well under 1 minute without.
 * - `BENCH_OUT=<dir>`: where to write.
 */
export interface BenchConfig {
  readonly quick: boolean;
  /**
   * Uncontended and single-waiter handoff runs are split into this many rounds, interleaved
   * across contenders (each round gets 1/rounds of the bounds below).
   */
  readonly rounds: number;
  /** Lock ttl of every scenario except held-lock scale, ms. */
  readonly ttl: number;
  readonly roundTrip: {
    readonly ms: number;
    readonly maxOps: number;
    /** Pub/sub deliveries timed for the handoff floor. */
    readonly pubSubSamples: number;
  };
  readonly uncontended: UncontendedConfig;
  /** Totals over all rounds, like `uncontended`. */
  readonly parallel: ParallelConfig;
  readonly handoff: HandoffConfig;
  readonly handoffQueued: HandoffConfig & { readonly waiters: number; readonly holdMs: number };
  readonly contended: ContendedConfig;
  readonly inProcessVariants: readonly ContendedVariant[];
  readonly multiProcessVariants: readonly ContendedVariant[];
  /** Held-lock scale rows, each in a fresh process per backend listed. */
  readonly heldScale: readonly HeldScaleRow[];
  /** Fault scenarios of our library (dead waiter, frozen server), on these backends. */
  readonly faults: {
    readonly backends: readonly ('redis' | 'etcd')[];
    readonly deadWaiter: DeadWaiterConfig;
    readonly frozenServer: FrozenServerConfig;
  };
  /** Only contenders whose id matches (BENCH_ONLY, a regular expression). */
  readonly only: RegExp | undefined;
  /** `BENCH_ONLY=faults`: only the fault scenarios. */
  readonly faultsOnly: boolean;
}

/** One held-lock scale row. */
export interface HeldScaleRow {
  readonly locks: number;
  readonly ttl: number;
  /** Measured window; at least one renewal period (ttl/3) so that a renewal wave falls in it. */
  readonly windowMs: number;
  readonly concurrency: number;
  /** Backends of our library measured at this size. */
  readonly backends: readonly BackendKind[];
}

const TTL = 10_000;
/** The library's default ttl, ms. */
const DEFAULT_TTL = 30_000;
const CALLERS = 64;
const THINK_MS = 2;
const ALL_BACKENDS: readonly BackendKind[] = ['redis', 'etcd', 'memory'];
/** The value of `BENCH_ONLY` that selects the fault scenarios alone. */
const FAULTS_ONLY = 'faults';

/**
 * Backend tuning of the fault scenarios: the library's defaults, set explicitly so that the
 * bounds the report states are the ones in force.
 */
const FAULT_TUNING = { commandTimeout: 2_000, claimWindow: 2_000, sessionTtl: 10_000 } as const;

function faultsConfig(repetitions: number, only: RegExp | undefined): BenchConfig['faults'] {
  return {
    backends: (['redis', 'etcd'] as const).filter((b) => !only || only.test(`ours/${b}`)),
    deadWaiter: {
      repetitions,
      ttl: 30_000,
      deadWait: 60_000,
      // Above the slowest figure seen on a library without a fix (about 20 s on Redis).
      liveWait: 40_000,
      tuning: FAULT_TUNING,
    },
    frozenServer: {
      acquireWait: 500,
      queuedWait: 1_000,
      ttl: 30_000,
      hangMs: 20_000,
      tuning: FAULT_TUNING,
    },
  };
}

/** Reads `BENCH_QUICK` and `BENCH_ONLY` from the environment. */
export function benchConfig(env: NodeJS.ProcessEnv = process.env): BenchConfig {
  const quick = env.BENCH_QUICK === '1' || env.BENCH_QUICK === 'true';
  const faultsOnly = env.BENCH_ONLY === FAULTS_ONLY;
  const only = env.BENCH_ONLY && !faultsOnly ? new RegExp(env.BENCH_ONLY) : undefined;
  const variants = (processes: number, workers: number, withThink: boolean): ContendedVariant[] =>
    [0, ...(withThink ? [THINK_MS] : [])].map((thinkMs) => ({
      processes,
      workersPerProcess: workers,
      thinkMs,
    }));
  if (quick) {
    return {
      quick,
      rounds: 2,
      ttl: TTL,
      roundTrip: { ms: 300, maxOps: 20_000, pubSubSamples: 200 },
      uncontended: { cycles: 300, ms: 400, ttl: TTL, warmup: 10 },
      parallel: { callers: CALLERS, cycles: 4_000, ms: 600, ttl: TTL, warmup: 2 },
      handoff: { samples: 40, ms: 800, ttl: TTL, settleMs: 5 },
      handoffQueued: { samples: 40, ms: 800, ttl: TTL, settleMs: 5, waiters: 8, holdMs: 2 },
      contended: { targetGrants: 300, ms: 700, ttl: TTL, warmupGrants: 100, warmupMs: 300 },
      inProcessVariants: variants(1, 8, true),
      multiProcessVariants: variants(4, 4, false),
      heldScale: [
        { locks: 2_000, ttl: 3_000, windowMs: 2_000, concurrency: 64, backends: ALL_BACKENDS },
      ],
      faults: faultsConfig(1, only),
      only,
      faultsOnly,
    };
  }
  return {
    quick,
    // Even: the interleaved rounds alternate the contender order (see interleavedPhase).
    rounds: 8,
    ttl: TTL,
    roundTrip: { ms: 1_000, maxOps: 100_000, pubSubSamples: 1_000 },
    // Bounded by time for the network contenders; the cycle bound keeps an in-process round
    // (memory, async-mutex: 100,000+/s) long enough to measure, about 40 ms.
    uncontended: { cycles: 20_000, ms: 1_500, ttl: TTL, warmup: 50 },
    parallel: { callers: CALLERS, cycles: 40_000, ms: 2_000, ttl: TTL, warmup: 5 },
    handoff: { samples: 250, ms: 5_000, ttl: TTL, settleMs: 5 },
    handoffQueued: { samples: 250, ms: 5_000, ttl: TTL, settleMs: 5, waiters: 8, holdMs: 2 },
    contended: { targetGrants: 2_000, ms: 3_000, ttl: TTL, warmupGrants: 1_000, warmupMs: 1_000 },
    inProcessVariants: variants(1, 8, true),
    multiProcessVariants: variants(4, 4, true),
    heldScale: [
      { locks: 10_000, ttl: 3_000, windowMs: 6_000, concurrency: 64, backends: ALL_BACKENDS },
      // etcd is left out at this size: its acquires (one txn each, about 1,000/s here) alone would
      // take minutes each way, and its renewal is per lease, not per lock (one keep-alive).
      {
        locks: 100_000,
        ttl: DEFAULT_TTL,
        windowMs: 12_000,
        concurrency: 64,
        backends: ['redis', 'memory'],
      },
    ],
    faults: faultsConfig(3, only),
    only,
    faultsOnly,
  };
}
