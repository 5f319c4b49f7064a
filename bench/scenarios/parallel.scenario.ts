import type { LockAdapter } from '../peers/lock-adapter.interface';
import type { ParallelResult } from '../report/results.types';
import { median, summarize } from '../stats';
import { nowMs } from '../support/time.util';

/** Bounds of one parallel round. */
export interface ParallelConfig {
  /** Concurrent callers, each looping acquire + release on keys of its own. */
  readonly callers: number;
  /** Cycles of all callers together, at most. */
  readonly cycles: number;
  readonly ms: number;
  readonly ttl: number;
  /** Unmeasured cycles per caller first. */
  readonly warmup: number;
}

/** Raw measurements of one round. */
export interface ParallelRound {
  readonly cycles: number;
  readonly seconds: number;
  readonly cycleMs: readonly number[];
}

/**
 * `callers` concurrent loops in this process on one contender (one client, as one app instance
 * has), each acquiring and releasing distinct keys of its own, never busy: the shape of a busy web
 * server. The client pipelines what the loops have in flight. Bounded by `cycles` and `ms`.
 */
export async function runParallelRound(
  adapter: LockAdapter,
  keyPrefix: string,
  config: ParallelConfig,
): Promise<ParallelRound> {
  const cycleMs: number[] = [];
  const warm = async (caller: number): Promise<void> => {
    for (let i = 0; i < config.warmup; i++) {
      await adapter.release(await adapter.acquire(`${keyPrefix}:w${caller}:${i}`, config.ttl));
    }
  };
  await Promise.all(Array.from({ length: config.callers }, (_, c) => warm(c)));
  const start = nowMs();
  let started = 0;
  const caller = async (c: number): Promise<void> => {
    for (let i = 0; started < config.cycles && nowMs() - start < config.ms; i++) {
      started++;
      const t0 = nowMs();
      await adapter.release(await adapter.acquire(`${keyPrefix}:${c}:${i}`, config.ttl));
      cycleMs.push(nowMs() - t0);
    }
  };
  await Promise.all(Array.from({ length: config.callers }, (_, c) => caller(c)));
  return { cycles: cycleMs.length, seconds: (nowMs() - start) / 1000, cycleMs };
}

/** Rate: the median of the rounds' rates; cycle latency: all samples pooled. */
export function summarizeParallel(
  adapter: string,
  callers: number,
  rounds: readonly ParallelRound[],
): ParallelResult {
  const roundRates = rounds.map((r) => r.cycles / r.seconds);
  return {
    adapter,
    callers,
    cycles: rounds.reduce((sum, r) => sum + r.cycles, 0),
    seconds: rounds.reduce((sum, r) => sum + r.seconds, 0),
    rounds: rounds.length,
    cyclesPerSec: median(roundRates),
    roundRates,
    cycleMs: summarize(rounds.flatMap((r) => r.cycleMs)),
  };
}
