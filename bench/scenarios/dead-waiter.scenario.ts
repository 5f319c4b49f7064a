import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import type { Lock } from 'nestjs-distributed-lock';
import type { BenchEnv } from '../peers/lock-adapter.interface';
import type { DeadWaiterResult, Outcome } from '../report/results.types';
import { median } from '../stats';
import { ChildPool } from '../support/child.pool';
import { FaultTuning, OpenLockService, openLockService } from '../support/lock-service.factory';
import { QueueDepthProbe } from '../support/queue-depth.probe';
import { errorMessage, nowMs, withTimeout } from '../support/time.util';

/** Bounds of the dead-waiter scenario (per backend). */
export interface DeadWaiterConfig {
  /** Repetitions, each on a fresh key with a fresh dying waiter process. */
  readonly repetitions: number;
  /** Ttl of the holder and of the live waiter, ms: long enough never to expire during a run. */
  readonly ttl: number;
  /** Wait of the waiter that is killed, ms (it never gets to use it). */
  readonly deadWait: number;
  /** Wait of the live waiter, ms: longer than any plausible figure, so the figure is real. */
  readonly liveWait: number;
  readonly tuning: FaultTuning;
}

/** How the orchestrator follows processes this scenario starts (for cleanup on error). */
export interface PidTracker {
  add(pid: number): unknown;
  delete(pid: number): unknown;
}

/** Longest any single preparation step may take before the repetition is declared failed, ms. */
const STEP_MS = 15_000;

/** The promised bound for `backend`, ms, and how it is made up. */
function boundOf(
  backend: 'redis' | 'etcd',
  tuning: FaultTuning,
  roundTripMs: number,
): { boundMs: number; bound: string } {
  if (backend === 'redis') {
    return {
      boundMs: tuning.claimWindow + roundTripMs,
      bound: `claimWindow ${tuning.claimWindow} ms + round trip ${roundTripMs.toFixed(2)} ms`,
    };
  }
  const ttl = Math.ceil(tuning.sessionTtl / 1000) * 1000;
  return { boundMs: ttl, bound: `sessionTtl ${ttl} ms` };
}

/**
 * A waiter that died while queued: holder H (this process) holds K; a child process D queues
 * for K and the live waiter W (this process, its own connections) queues behind it; D is
 * SIGKILLed, then H releases. Sample: from H's `release()` returning to W's `acquire()`
 * resolving (or giving up: counted in `timedOut`, sample = when it gave up).
 */
export async function runDeadWaiter(
  backend: 'redis' | 'etcd',
  env: BenchEnv,
  config: DeadWaiterConfig,
  pids: PidTracker,
  log: (message: string) => void,
): Promise<Outcome<DeadWaiterResult>> {
  const adapter = `ours/${backend}`;
  const pool = ChildPool.start(join(__dirname, 'dead-waiter.child.js'), config.repetitions, {});
  pool.pids.forEach((pid) => pids.add(pid));
  const opened: OpenLockService[] = [];
  let probe: QueueDepthProbe | undefined;
  try {
    await pool.all('open', () => ({ backend, env, tuning: config.tuning }), 60_000);
    const holder = await openLockService(backend, env, config.tuning);
    opened.push(holder);
    const waiter = await openLockService(backend, env, config.tuning);
    opened.push(waiter);
    probe = await QueueDepthProbe.open(backend, env);
    const roundTripMs = await probe.roundTripMs();
    const prefix = holder.lib.DEFAULT_KEY_PREFIX;
    const run = Date.now().toString(36);
    const samples: number[] = [];
    let timedOut = 0;
    for (let r = 0; r < config.repetitions; r++) {
      const key = `bench:${run}:dead-waiter:${backend}:${r}`;
      const s = await oneRepetition(
        key,
        prefix + key,
        r,
        { holder, waiter, pool, probe, pids },
        config,
      );
      samples.push(s.ms);
      if (s.timedOut) timedOut++;
      log(
        `${adapter} dead waiter ${r + 1}/${config.repetitions}: ${s.ms.toFixed(0)} ms${s.timedOut ? ' (live waiter gave up)' : ''}`,
      );
    }
    return {
      adapter,
      backend,
      repetitions: samples.length,
      samplesMs: samples,
      medianMs: median(samples),
      maxMs: Math.max(...samples),
      ...boundOf(backend, config.tuning, roundTripMs),
      liveWaitMs: config.liveWait,
      timedOut,
    };
  } catch (err) {
    return { adapter, error: `dead waiter: ${errorMessage(err)}` };
  } finally {
    probe?.close();
    for (const s of opened) {
      await withTimeout(s.close(), STEP_MS, 'close').catch(() => undefined);
    }
    await stopLiveChildren(pool);
    pool.pids.forEach((pid) => pids.delete(pid));
  }
}

function running(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/**
 * Like `ChildPool.stop`, but never signals the PID of a child that already died (the killed
 * waiters): that PID may belong to someone else by now.
 */
async function stopLiveChildren(pool: ChildPool): Promise<void> {
  await Promise.allSettled(
    pool.children.map((child, i) =>
      running(child) ? pool.call(i, 'exit', undefined, 5_000) : Promise.resolve(),
    ),
  );
  for (const child of pool.children) {
    if (!running(child)) continue;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await withTimeout(exited, 5_000, 'exit').catch(() => child.kill('SIGKILL'));
  }
}

/** What every repetition of one backend shares. */
interface Parties {
  readonly holder: OpenLockService;
  readonly waiter: OpenLockService;
  /** One dying waiter process per repetition. */
  readonly pool: ChildPool;
  readonly probe: QueueDepthProbe;
  readonly pids: PidTracker;
}

async function oneRepetition(
  key: string,
  finalKey: string,
  index: number,
  { holder, waiter, pool, probe, pids }: Parties,
  config: DeadWaiterConfig,
): Promise<{ ms: number; timedOut: boolean }> {
  const held = await withTimeout(
    holder.locks.acquire(key, { ttl: config.ttl, wait: 0 }),
    STEP_MS,
    'holder acquire',
  );
  await pool.call(index, 'queue', { key, ttl: config.ttl, wait: config.deadWait }, STEP_MS);
  await probe.until(finalKey, 1, STEP_MS);
  let settledAt = Number.NaN;
  const live = waiter.locks.acquire(key, { ttl: config.ttl, wait: config.liveWait }).then(
    (lock): Lock | Error => {
      settledAt = nowMs();
      return lock;
    },
    (err: unknown): Lock | Error => {
      settledAt = nowMs();
      return err instanceof Error ? err : new Error(String(err));
    },
  );
  await probe.until(finalKey, 2, STEP_MS);
  const child = pool.children[index];
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await withTimeout(exited, STEP_MS, `waiter process ${child.pid} exit`);
  if (child.pid !== undefined) pids.delete(child.pid);
  await withTimeout(held.release(), STEP_MS, 'holder release');
  const releasedAt = nowMs();
  const outcome = await withTimeout(live, config.liveWait + STEP_MS, 'live waiter');
  if (outcome instanceof holder.lib.LockNotAcquiredError) {
    return { ms: settledAt - releasedAt, timedOut: true };
  }
  if (outcome instanceof Error) throw outcome;
  await withTimeout(outcome.release(), STEP_MS, 'live waiter release');
  return { ms: settledAt - releasedAt, timedOut: false };
}
