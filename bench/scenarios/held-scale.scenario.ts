import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Lock } from 'nestjs-distributed-lock';
import type { BackendKind, BenchEnv } from '../peers/lock-adapter.interface';
import { OursAdapter } from '../peers/ours.adapter';
import type { HeldScaleResult } from '../report/results.types';
import { nowMs, sleep } from '../support/time.util';
import { BackendCounters, rates } from './backend.counters';

/** What the held-scale child is told. */
export interface HeldScaleTask {
  readonly backend: BackendKind;
  readonly env: BenchEnv;
  readonly locks: number;
  readonly ttl: number;
  readonly windowMs: number;
  /** Acquires (and releases) in flight at once. */
  readonly concurrency: number;
  readonly keyPrefix: string;
}

/** The compiled script that runs this scenario in a fresh process (see held-scale.child.ts). */
export const HELD_SCALE_CHILD = join(__dirname, 'held-scale.child.js');

const MB = 1024 * 1024;
/**
 * Sampling interval of the event-loop delay histogram. Its samples are the time between two
 * ticks of this interval, so the lag is a sample minus the interval.
 */
const LAG_RESOLUTION_MS = 1;

function lagMs(nanoseconds: number): number {
  return Math.max(0, nanoseconds / 1e6 - LAG_RESOLUTION_MS);
}

/** Heap used after full collections, or null when this process has no `gc()` (`--expose-gc`). */
function collectedHeap(): number | null {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return null;
  // Twice: objects freed by the first collection's finalizers go in the second.
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/** Runs `fn(i)` for i in [0, count) with at most `concurrency` calls in flight. */
async function pool(
  count: number,
  concurrency: number,
  fn: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
}

/** Locks the warm-up holds (at most the row's count). */
const WARM_LOCKS = 2_000;
/** The warm-up locks' ttl, ms: renewed every ttl/3, so about three renewals while they are held. */
const WARM_TTL_MS = 600;

/**
 * Runs acquire, renewal and release on `WARM_LOCKS` locks before the heap is read: scripts are
 * loaded, connections open, and V8 has compiled the hot paths. Without it the code compiled
 * during the measured acquisitions (about 1 MB, measured with a heap-snapshot census) was
 * counted as heap per lock: 100-250 B at 10,000 locks, although it does not grow with them.
 */
async function warmUp(adapter: OursAdapter, task: HeldScaleTask): Promise<void> {
  const count = Math.min(WARM_LOCKS, task.locks);
  const warm = new Array<Lock>(count);
  try {
    await pool(count, task.concurrency, async (i) => {
      warm[i] = await adapter.acquire(`${task.keyPrefix}:warm:${i}`, WARM_TTL_MS);
    });
    await sleep(WARM_TTL_MS);
  } finally {
    await pool(count, task.concurrency, async (i) => {
      await warm[i]?.release().catch(() => undefined);
    });
  }
}

/**
 * Our library only: `locks` locks held at once with renewal on (ttl `ttl`, so renewed about every
 * ttl/3), then a measurement window: backend requests per second (Redis INFO commandstats, etcd
 * /metrics), event-loop delay (monitorEventLoopDelay), RSS and heap (per lock: after full
 * collections, against the heap before the first acquire). Then everything is released.
 */
export async function runHeldScale(task: HeldScaleTask): Promise<HeldScaleResult> {
  const rssBefore = process.memoryUsage().rss;
  const adapter = await OursAdapter.create(task.backend, task.env);
  const counters = await BackendCounters.open(task.backend, task.env);
  const handles: Lock[] = new Array<Lock>(task.locks);
  try {
    await warmUp(adapter, task);
    const heapBefore = collectedHeap();
    const t0 = nowMs();
    await pool(task.locks, task.concurrency, async (i) => {
      handles[i] = await adapter.acquire(`${task.keyPrefix}:${i}`, task.ttl);
    });
    const acquireSeconds = (nowMs() - t0) / 1000;
    // Let the first renewal round pass so the window sees the steady state.
    await sleep(Math.ceil(task.ttl / 3) + 250);
    const before = await counters.read();
    const histogram = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
    histogram.enable();
    const w0 = nowMs();
    await sleep(task.windowMs);
    histogram.disable();
    const windowSeconds = (nowMs() - w0) / 1000;
    const after = await counters.read();
    const memory = process.memoryUsage();
    const heapHeld = collectedHeap();
    const lost = handles.filter((h) => !h.held).length;
    let byCommand: Record<string, number> = {};
    let backendOpsPerSec: number | null = null;
    let renewOpsPerSec: number | null = null;
    if (before && after) {
      byCommand = rates(before, after, windowSeconds);
      // Redis counts the commands a script runs under their own names (hmget, pexpire...): those
      // are work inside one request, so requests are the script calls. etcd counts requests.
      const requestNames = task.backend === 'redis' ? ['evalsha', 'eval'] : Object.keys(byCommand);
      renewOpsPerSec = requestNames.reduce((sum, name) => sum + (byCommand[name] ?? 0), 0);
      backendOpsPerSec = Object.values(byCommand).reduce((a, b) => a + b, 0);
    }
    const top = Object.entries(byCommand)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 6);
    return {
      adapter: adapter.id,
      locks: task.locks,
      ttlMs: task.ttl,
      acquireSeconds,
      windowSeconds,
      backendOpsPerSec,
      renewOpsPerSec,
      byCommand: Object.fromEntries(top),
      lagP50Ms: lagMs(histogram.percentile(50)),
      lagP99Ms: lagMs(histogram.percentile(99)),
      lagMaxMs: lagMs(histogram.max),
      rssMb: memory.rss / MB,
      heapUsedMb: memory.heapUsed / MB,
      rssDeltaMb: (memory.rss - rssBefore) / MB,
      lost,
      heapPerLockBytes:
        heapBefore === null || heapHeld === null ? null : (heapHeld - heapBefore) / task.locks,
    };
  } finally {
    await pool(task.locks, task.concurrency, async (i) => {
      await handles[i]?.release().catch(() => undefined);
    });
    counters.close();
    await adapter.close();
  }
}
