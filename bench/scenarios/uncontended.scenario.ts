import type { LockAdapter } from '../peers/lock-adapter.interface';
import type { UncontendedResult } from '../report/results.types';
import { median, summarize } from '../stats';
import { nowMs } from '../support/time.util';

/** Bounds of one uncontended round. */
export interface UncontendedConfig {
  readonly cycles: number;
  readonly ms: number;
  readonly ttl: number;
  readonly warmup: number;
}

/** Raw measurements of one round. */
export interface UncontendedRound {
  readonly cycles: number;
  readonly seconds: number;
  readonly acquire: readonly number[];
  readonly release: readonly number[];
}

/**
 * One client, sequential acquire + release of distinct keys (never busy), bounded by `cycles` and
 * `ms`. The orchestrator runs several short rounds per contender, interleaved with the other
 * contenders, so that noise on a shared machine hits everyone alike.
 */
export async function runUncontendedRound(
  adapter: LockAdapter,
  keyPrefix: string,
  config: UncontendedConfig,
): Promise<UncontendedRound> {
  for (let i = 0; i < config.warmup; i++) {
    await adapter.release(await adapter.acquire(`${keyPrefix}:warm:${i}`, config.ttl));
  }
  const acquire: number[] = [];
  const release: number[] = [];
  const start = nowMs();
  let cycles = 0;
  while (cycles < config.cycles && nowMs() - start < config.ms) {
    const t0 = nowMs();
    const handle = await adapter.acquire(`${keyPrefix}:${cycles}`, config.ttl);
    const t1 = nowMs();
    await adapter.release(handle);
    const t2 = nowMs();
    acquire.push(t1 - t0);
    release.push(t2 - t1);
    cycles++;
  }
  return { cycles, seconds: (nowMs() - start) / 1000, acquire, release };
}

/** Rate: the median of the rounds' rates; latencies: percentiles of all samples pooled. */
export function summarizeUncontended(
  adapter: string,
  rounds: readonly UncontendedRound[],
): UncontendedResult {
  const cycles = rounds.reduce((sum, r) => sum + r.cycles, 0);
  const seconds = rounds.reduce((sum, r) => sum + r.seconds, 0);
  const roundRates = rounds.map((r) => r.cycles / r.seconds);
  return {
    adapter,
    cycles,
    seconds,
    rounds: rounds.length,
    cyclesPerSec: median(roundRates),
    roundRates,
    acquireMs: summarize(rounds.flatMap((r) => r.acquire)),
    releaseMs: summarize(rounds.flatMap((r) => r.release)),
  };
}
