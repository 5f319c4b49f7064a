import { BusyError, LockAdapter } from '../peers/lock-adapter.interface';
import type { HandoffResult } from '../report/results.types';
import { summarize } from '../stats';
import { nowMs, sleep, withTimeout } from '../support/time.util';

/** Bounds of one handoff run. */
export interface HandoffConfig {
  /** Samples to collect at most. */
  readonly samples: number;
  /** Time bound of the run in ms. */
  readonly ms: number;
  readonly ttl: number;
  /** How long the holder keeps the lock after the waiter(s) started, in ms (plus 0-3 ms jitter). */
  readonly settleMs: number;
}

/** Upper bound of one acquire inside a handoff run before the run is declared stuck. */
const STUCK_MS = 15_000;

/** Samples of one single-waiter handoff round, in ms. */
export interface HandoffRound {
  readonly samples: readonly number[];
}

/**
 * One holder, one waiter, in one process: the waiter starts acquiring while the holder holds;
 * after a short, jittered settle time (so the waiter is queued, subscribed or polling) the holder
 * releases. Sample: from `release()` returning to the waiter's `acquire()` resolving (negative when
 * the waiter got the lock before the holder's `release()` returned). The orchestrator runs several
 * such rounds per contender, interleaved with the other contenders.
 */
export async function runHandoffSingleRound(
  adapter: LockAdapter,
  key: string,
  config: HandoffConfig,
): Promise<HandoffRound> {
  const samples: number[] = [];
  // Warm-up: one full round, unmeasured (subscriptions, scripts, watchers).
  await oneRound(adapter, key, config);
  const start = nowMs();
  while (samples.length < config.samples && nowMs() - start < config.ms) {
    samples.push(await oneRound(adapter, key, config));
  }
  return { samples };
}

/** Percentiles over the samples of every round pooled. */
export function summarizeHandoffSingle(
  adapter: string,
  rounds: readonly HandoffRound[],
): HandoffResult {
  const samples = rounds.flatMap((r) => r.samples);
  return {
    adapter,
    waiters: 1,
    rounds: rounds.length,
    latencyMs: summarize(samples),
    early: samples.filter((s) => s < 0).length,
  };
}

async function oneRound(adapter: LockAdapter, key: string, config: HandoffConfig): Promise<number> {
  const held = await withTimeout(adapter.acquire(key, config.ttl), STUCK_MS, 'holder acquire');
  let acquiredAt = Number.NaN;
  const waiter = adapter.acquire(key, config.ttl).then((handle) => {
    acquiredAt = nowMs();
    return handle;
  });
  await sleep(config.settleMs + Math.random() * 3);
  await adapter.release(held);
  const releasedAt = nowMs();
  const next = await withTimeout(waiter, STUCK_MS, 'waiter acquire');
  await adapter.release(next);
  return acquiredAt - releasedAt;
}

/**
 * A holder and `waiters` queued waiters on one key, in one process (`waiters + 1` workers): every
 * worker loops acquire, hold `holdMs`, release, and re-queues only once the lock went to someone
 * else, so every release finds `waiters` waiters queued and none of them is the releaser. Sample:
 * from one `release()` returning to the next grant. Bounded by `samples` and `ms`.
 */
export async function runHandoffQueued(
  adapter: LockAdapter,
  key: string,
  waiters: number,
  holdMs: number,
  config: HandoffConfig,
): Promise<HandoffResult> {
  const samples: number[] = [];
  let early = 0;
  let releasing = false;
  let lastReleasedAt: number | undefined;
  let grantDuringRelease: number | undefined;
  let stop = false;
  let granted: (() => void) | undefined;
  const start = nowMs();
  const onGrant = (): void => {
    const at = nowMs();
    if (releasing) {
      grantDuringRelease = at;
    } else if (lastReleasedAt !== undefined) {
      samples.push(at - lastReleasedAt);
      lastReleasedAt = undefined;
    }
    if (samples.length >= config.samples || nowMs() - start >= config.ms) stop = true;
    granted?.();
    granted = undefined;
  };
  const release = async (handle: unknown): Promise<void> => {
    releasing = true;
    grantDuringRelease = undefined;
    await adapter.release(handle);
    const at = nowMs();
    releasing = false;
    if (grantDuringRelease !== undefined) {
      early++;
      samples.push(grantDuringRelease - at);
      grantDuringRelease = undefined;
    } else {
      lastReleasedAt = at;
    }
  };
  const worker = async (): Promise<void> => {
    for (let round = 0; round < 100_000 && !stop; round++) {
      let handle: unknown;
      try {
        handle = await withTimeout(adapter.acquire(key, config.ttl), STUCK_MS, 'acquire');
      } catch (err) {
        // A peer at its defaults may give up waiting (its retry budget); it simply queues again.
        if (err instanceof BusyError) continue;
        throw err;
      }
      onGrant();
      await sleep(holdMs);
      const next = new Promise<void>((resolve) => (granted = resolve));
      await release(handle);
      // Re-queue behind the waiters only after one of them got the lock.
      if (!stop) await withTimeout(next, STUCK_MS, 'next grant');
    }
  };
  // The first grant is not sampled (no release before it); from then on each release is.
  await Promise.all(Array.from({ length: waiters + 1 }, () => worker()));
  return { adapter: adapter.id, waiters, rounds: 1, latencyMs: summarize(samples), early };
}
