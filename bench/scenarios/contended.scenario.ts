import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { BenchEnv, LockAdapter } from '../peers/lock-adapter.interface';
import type { ContendedResult, ContendedVariant } from '../report/results.types';
import { median, summarize } from '../stats';
import { ChildPool } from '../support/child.pool';
import { epochMs } from '../support/time.util';
import {
  ContendedPartial,
  ContendedTask,
  RECORD_FIELDS,
  runContendedWorkers,
} from './contended.worker';

/** Bounds of one contended run. */
export interface ContendedConfig {
  readonly targetGrants: number;
  readonly ms: number;
  readonly ttl: number;
  /**
   * Before each measured run, the same workers run the same loop on another key until this many
   * grants per process were made, or for `warmupMs`, and those grants are dropped. A short run in
   * a fresh process otherwise measures a contender's JavaScript before V8 has optimised it, which
   * weighs on a contender by how much code its grant runs (measured on ours, 4 processes x
   * 4 workers: 766-891 grants/s cold, 1,220-1,333 after 1,000 warm-up grants per process).
   */
  readonly warmupGrants: number;
  readonly warmupMs: number;
}

/** Time to let every process get ready before the common start, in ms. */
const START_DELAY_MS = 100;
/** Extra time a run may take past its deadline (draining waiters) before it is declared stuck. */
const DRAIN_MS = 25_000;

/** Short label of a variant, such as `8w` or `4p x 4w +2ms think`. */
export function variantLabel(v: ContendedVariant): string {
  const base =
    v.processes === 1 ? `${v.workersPerProcess}w` : `${v.processes}p x ${v.workersPerProcess}w`;
  return v.thinkMs > 0 ? `${base} +${v.thinkMs}ms think` : base;
}

function task(
  key: string,
  counterKey: string,
  variant: ContendedVariant,
  config: ContendedConfig,
  process: number,
): ContendedTask {
  const startAt = epochMs() + START_DELAY_MS;
  return {
    key,
    counterKey,
    workers: variant.workersPerProcess,
    firstWorkerId: process * variant.workersPerProcess,
    thinkMs: variant.thinkMs,
    targetGrants: config.targetGrants,
    startAt,
    deadline: startAt + config.ms,
    ttl: config.ttl,
  };
}

/** The warm-up run before the measured one: same workers and loop, its own key and counter. */
function warmupTask(
  key: string,
  variant: ContendedVariant,
  config: ContendedConfig,
  process: number,
  startAt: number,
): ContendedTask {
  return {
    ...task(`${key}:warmup`, `${key}:warmup:counter`, variant, config, process),
    targetGrants: config.warmupGrants * variant.processes,
    startAt,
    deadline: startAt + config.warmupMs,
  };
}

/**
 * For each grant, how many other grants were made while it waited (acquire called → resolved),
 * from the grant times of every process (on one clock: see ContendedProcesses.run). In FIFO order
 * that is at most workers − 1, each of the others at most once, so more is a grant out of turn.
 * The check is one-sided: a wait timed from the acquire call, not from its arrival in the queue,
 * can count a grant made before it queued, and an overtaking that keeps the count within
 * workers − 1 is not seen.
 */
function servedBefore(pairs: readonly (readonly number[])[]): number[] {
  const grantedAt = pairs.map((p) => p[2]).sort((a, b) => a - b);
  // Index of the first time in `grantedAt` greater than `t` (`orEqual`: at least `t`).
  const firstAfter = (t: number, orEqual: boolean): number => {
    let lo = 0;
    let hi = grantedAt.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (grantedAt[mid] < t || (!orEqual && grantedAt[mid] === t)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  return pairs.map((p) => Math.max(0, firstAfter(p[2], true) - firstAfter(p[4], false)));
}

/** Round trips per child for {@link ContendedProcesses.clockOffset}. */
const CLOCK_SAMPLES = 9;

/** `partial` with its epoch times moved by `-offset` ms onto the orchestrator's clock. */
function onOurClock(partial: ContendedPartial, offset: number): ContendedPartial {
  const records = partial.records.slice();
  for (let i = 0; i + RECORD_FIELDS <= records.length; i += RECORD_FIELDS) {
    records[i + 2] -= offset;
    records[i + 3] -= offset;
    records[i + 4] -= offset;
  }
  return { ...partial, records, endedAt: partial.endedAt - offset };
}

/** Merges the partial results of every process into one result. */
function merge(
  adapter: string,
  variant: ContendedVariant,
  partials: readonly ContendedPartial[],
  startAt: number,
  counterValue: number,
): ContendedResult {
  // [counter value, worker id, granted at, release called at, acquire called at] per grant.
  const pairs: [number, number, number, number, number][] = [];
  for (const p of partials) {
    const r = p.records;
    for (let i = 0; i + RECORD_FIELDS <= r.length; i += RECORD_FIELDS) {
      pairs.push([r[i], r[i + 1], r[i + 2], r[i + 3], r[i + 4]]);
    }
  }
  pairs.sort((a, b) => a[0] - b[0]);
  let switches = 0;
  const handoffs: number[] = [];
  for (let i = 1; i < pairs.length; i++) {
    if (pairs[i][1] !== pairs[i - 1][1]) switches++;
    // Consecutive counter values only: a gap means a grant whose record is missing.
    if (pairs[i][0] === pairs[i - 1][0] + 1) handoffs.push(pairs[i][2] - pairs[i - 1][3]);
  }
  const waits = partials.flatMap((p) => p.waits);
  const holds = partials.flatMap((p) => p.holds);
  const holdP50Ms = median(holds);
  const handoffP50Ms = median(handoffs);
  const workers = variant.processes * variant.workersPerProcess;
  const served = servedBefore(pairs);
  const endedAt = Math.max(...partials.map((p) => p.endedAt));
  const seconds = Math.max(1e-3, (endedAt - startAt) / 1000);
  return {
    adapter,
    ...variant,
    grants: pairs.length,
    seconds,
    grantsPerSec: pairs.length / seconds,
    waitMs: summarize(waits),
    holdP50Ms,
    handoffP50Ms,
    idealFifoWaitMs: (workers - 1) * (holdP50Ms + handoffP50Ms),
    ownerSwitchPct: pairs.length > 1 ? (100 * switches) / (pairs.length - 1) : Number.NaN,
    outOfTurnPct:
      served.length > 0
        ? (100 * served.filter((n) => n > workers - 1).length) / served.length
        : Number.NaN,
    servedBeforeMax: served.length > 0 ? Math.max(...served) : Number.NaN,
    lostUpdates: pairs.length - counterValue,
    failedAcquires: partials.reduce((sum, p) => sum + p.failed, 0),
  };
}

/** All workers in this process, sharing `adapter` (one client, as one app instance would). */
export async function runContendedInProcess(
  adapter: LockAdapter,
  counter: Redis,
  key: string,
  variant: ContendedVariant,
  config: ContendedConfig,
): Promise<ContendedResult> {
  const counterKey = `${key}:counter`;
  await counter.set(counterKey, '0');
  await adapter.release(await adapter.acquire(`${key}:warm`, config.ttl));
  await counter.set(`${key}:warmup:counter`, '0');
  await runContendedWorkers(
    adapter,
    counter,
    warmupTask(key, variant, config, 0, epochMs() + START_DELAY_MS),
  );
  const t = task(key, counterKey, variant, config, 0);
  const partial = await runContendedWorkers(adapter, counter, t);
  const value = Number(await counter.get(counterKey));
  return merge(adapter.id, variant, [partial], t.startAt, value);
}

/** The worker processes of the multi-process runs, reused across contenders. */
export class ContendedProcesses {
  private constructor(private readonly pool: ChildPool) {}

  static start(count: number): ContendedProcesses {
    return new ContendedProcesses(
      ChildPool.start(join(__dirname, 'contended.child.js'), count, {}),
    );
  }

  get pids(): number[] {
    return this.pool.pids;
  }

  /** `variant.processes` processes x `variant.workersPerProcess` workers on one key. */
  async run(
    adapterId: string,
    env: BenchEnv,
    counter: Redis,
    key: string,
    variant: ContendedVariant,
    config: ContendedConfig,
  ): Promise<ContendedResult> {
    const n = variant.processes;
    if (n > this.pool.children.length)
      throw new Error(`only ${this.pool.children.length} processes`);
    const counterKey = `${key}:counter`;
    await counter.set(counterKey, '0');
    const indexes = Array.from({ length: n }, (_, i) => i);
    try {
      await Promise.all(
        indexes.map((i) =>
          this.pool.call(
            i,
            'prepare',
            { adapterId, env, warmKey: `${key}:warm:${i}`, ttl: config.ttl },
            30_000,
          ),
        ),
      );
      await counter.set(`${key}:warmup:counter`, '0');
      const warmupAt = epochMs() + START_DELAY_MS;
      await Promise.all(
        indexes.map((i) =>
          this.pool.call(
            i,
            'run',
            warmupTask(key, variant, config, i, warmupAt),
            config.warmupMs + DRAIN_MS,
          ),
        ),
      );
      // Each process's epoch clock has its own origin, off by up to about a millisecond: as
      // much as a grant takes here. Grant times of different processes are compared (handoff,
      // out of turn), so each is moved onto this process's clock first.
      const offsets: number[] = [];
      for (const i of indexes) offsets.push(await this.clockOffset(i));
      const startAt = epochMs() + START_DELAY_MS;
      const reported = await Promise.all(
        indexes.map((i) => {
          const t = {
            ...task(key, counterKey, variant, config, i),
            startAt,
            deadline: startAt + config.ms,
          };
          return this.pool.call<ContendedPartial>(i, 'run', t, config.ms + DRAIN_MS);
        }),
      );
      const partials = reported.map((partial, i) => onOurClock(partial, offsets[i]));
      const value = Number(await counter.get(counterKey));
      return merge(adapterId, variant, partials, startAt, value);
    } finally {
      await Promise.allSettled(indexes.map((i) => this.pool.call(i, 'close', undefined, 10_000)));
    }
  }

  /**
   * How far child `index`'s epoch clock is ahead of ours, ms: its reading against the midpoint of
   * the round trip that fetched it, from the shortest of a few round trips (the error is at most
   * half of it, tens of microseconds over IPC).
   */
  private async clockOffset(index: number): Promise<number> {
    let best = { rtt: Infinity, offset: 0 };
    for (let i = 0; i < CLOCK_SAMPLES; i++) {
      const sent = epochMs();
      const theirs = await this.pool.call<number>(index, 'clock', undefined, 5_000);
      const received = epochMs();
      if (received - sent < best.rtt) {
        best = { rtt: received - sent, offset: theirs - (sent + received) / 2 };
      }
    }
    return best.offset;
  }

  async stop(): Promise<void> {
    await this.pool.stop();
  }
}
