import type { ContendedVariant } from './report/results.types';
import type { ContendedConfig } from './scenarios/contended.scenario';
import type { HandoffConfig } from './scenarios/handoff.scenario';
import type { UncontendedConfig } from './scenarios/uncontended.scenario';

/** Every bound of one run. Full: about 5 minutes; `BENCH_QUICK=1`: about 1 minute. */
export interface BenchConfig {
  readonly quick: boolean;
  /**
   * Uncontended and single-waiter handoff runs are split into this many rounds, interleaved
   * across contenders (each round gets 1/rounds of the bounds below).
   */
  readonly rounds: number;
  /** Lock ttl of every scenario except held-lock scale, ms. */
  readonly ttl: number;
  readonly roundTrip: { readonly ms: number; readonly maxOps: number };
  readonly uncontended: UncontendedConfig;
  readonly handoff: HandoffConfig;
  readonly handoffQueued: HandoffConfig & { readonly waiters: number; readonly holdMs: number };
  readonly contended: ContendedConfig;
  readonly inProcessVariants: readonly ContendedVariant[];
  readonly multiProcessVariants: readonly ContendedVariant[];
  readonly heldScale: {
    readonly locks: number;
    readonly ttl: number;
    readonly windowMs: number;
    readonly concurrency: number;
  };
  /** Only contenders whose id matches (BENCH_ONLY, a regular expression). */
  readonly only: RegExp | undefined;
}

const TTL = 10_000;
const THINK_MS = 2;

/** Reads `BENCH_QUICK` and `BENCH_ONLY` from the environment. */
export function benchConfig(env: NodeJS.ProcessEnv = process.env): BenchConfig {
  const quick = env.BENCH_QUICK === '1' || env.BENCH_QUICK === 'true';
  const only = env.BENCH_ONLY ? new RegExp(env.BENCH_ONLY) : undefined;
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
      roundTrip: { ms: 300, maxOps: 20_000 },
      uncontended: { cycles: 300, ms: 400, ttl: TTL, warmup: 10 },
      handoff: { samples: 40, ms: 800, ttl: TTL, settleMs: 5 },
      handoffQueued: { samples: 40, ms: 800, ttl: TTL, settleMs: 5, waiters: 8, holdMs: 2 },
      contended: { targetGrants: 300, ms: 700, ttl: TTL },
      inProcessVariants: variants(1, 8, true),
      multiProcessVariants: variants(4, 4, false),
      heldScale: { locks: 2_000, ttl: 3_000, windowMs: 2_000, concurrency: 64 },
      only,
    };
  }
  return {
    quick,
    rounds: 5,
    ttl: TTL,
    roundTrip: { ms: 1_000, maxOps: 100_000 },
    uncontended: { cycles: 2_000, ms: 2_000, ttl: TTL, warmup: 50 },
    handoff: { samples: 250, ms: 5_000, ttl: TTL, settleMs: 5 },
    handoffQueued: { samples: 250, ms: 5_000, ttl: TTL, settleMs: 5, waiters: 8, holdMs: 2 },
    contended: { targetGrants: 2_000, ms: 3_000, ttl: TTL },
    inProcessVariants: variants(1, 8, true),
    multiProcessVariants: variants(4, 4, true),
    heldScale: { locks: 10_000, ttl: 3_000, windowMs: 6_000, concurrency: 64 },
    only,
  };
}
