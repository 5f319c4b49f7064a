import type { Redis } from 'ioredis';
import { BusyError, LockAdapter } from '../peers/lock-adapter.interface';
import { epochMs, nowMs, sleep } from '../support/time.util';

/** Numbers per grant in {@link ContendedPartial.records}. */
export const RECORD_FIELDS = 5;

/** What every process of a contended run is told. */
export interface ContendedTask {
  /** The one lock key every worker competes for. */
  readonly key: string;
  /** The Redis counter the critical section increments with GET then SET (not atomic). */
  readonly counterKey: string;
  readonly workers: number;
  /** Global id of this process's first worker. */
  readonly firstWorkerId: number;
  readonly thinkMs: number;
  /** Stop once the counter reaches this many grants. */
  readonly targetGrants: number;
  /** Epoch ms at which workers start. */
  readonly startAt: number;
  /** Epoch ms after which no worker starts a new acquire. */
  readonly deadline: number;
  readonly ttl: number;
}

/** What one process measured; the orchestrator merges these. */
export interface ContendedPartial {
  /**
   * Flat groups of {@link RECORD_FIELDS}: counter value read in the critical section, worker id,
   * epoch ms at which the acquire resolved, epoch ms at which the release was called, epoch ms at
   * which the acquire was called.
   */
  readonly records: number[];
  readonly waits: number[];
  readonly holds: number[];
  readonly failed: number;
  /** Epoch ms at which the last worker of this process finished its last release. */
  readonly endedAt: number;
}

/**
 * Runs `task.workers` workers on `task.key` in this process: acquire, GET counter, SET counter+1,
 * release, (think), again, until the deadline or the target. The counter value each worker read
 * orders all grants of all processes, which gives owner switches across processes for free.
 */
export async function runContendedWorkers(
  adapter: LockAdapter,
  counter: Redis,
  task: ContendedTask,
): Promise<ContendedPartial> {
  const records: number[] = [];
  const waits: number[] = [];
  const holds: number[] = [];
  let failed = 0;
  let stop = false;
  let endedAt = epochMs();
  const wait = task.startAt - epochMs();
  if (wait > 0) await sleep(wait);

  const worker = async (id: number): Promise<void> => {
    // Bounded by the deadline (checked before every acquire) and by a count.
    for (let round = 0; round < 1_000_000 && !stop && epochMs() < task.deadline; round++) {
      const t0 = nowMs();
      const requestedAt = epochMs();
      let handle: unknown;
      try {
        handle = await adapter.acquire(task.key, task.ttl);
      } catch (err) {
        if (!(err instanceof BusyError)) throw err;
        failed++;
        continue;
      }
      const t1 = nowMs();
      const grantedAt = epochMs();
      const value = Number((await counter.get(task.counterKey)) ?? '0');
      await counter.set(task.counterKey, String(value + 1));
      const t2 = nowMs();
      const releasedAt = epochMs();
      await adapter.release(handle);
      endedAt = Math.max(endedAt, epochMs());
      waits.push(t1 - t0);
      holds.push(t2 - t1);
      records.push(value, id, grantedAt, releasedAt, requestedAt);
      if (value + 1 >= task.targetGrants) stop = true;
      if (task.thinkMs > 0) await sleep(task.thinkMs);
    }
  };
  await Promise.all(Array.from({ length: task.workers }, (_, i) => worker(task.firstWorkerId + i)));
  return { records, waits, holds, failed, endedAt };
}
