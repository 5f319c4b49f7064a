import { startEtcd } from '../../test/servers/etcd.server';
import { startRedis } from '../../test/servers/redis.server';
import { removeDir, ServerProcess } from '../../test/servers/server.process';
import type { BenchEnv } from '../peers/lock-adapter.interface';
import type { FrozenServerResult, Outcome } from '../report/results.types';
import { resumeServer } from '../support/bench.servers';
import { FaultTuning, openLockService } from '../support/lock-service.factory';
import { QueueDepthProbe } from '../support/queue-depth.probe';
import { errorMessage, nowMs, withTimeout } from '../support/time.util';

/** Bounds of the frozen-server scenario (per backend). */
export interface FrozenServerConfig {
  /** `acquire({ wait })` of a free key while the server is frozen, ms. */
  readonly acquireWait: number;
  /** Wait of the waiter that queued behind a holder before the freeze, ms. */
  readonly queuedWait: number;
  /** Ttl of every lock of the scenario, ms. */
  readonly ttl: number;
  /** Longest a call may stay unanswered before it is reported as hanging, ms. */
  readonly hangMs: number;
  readonly tuning: FaultTuning;
}

/** How the orchestrator follows the servers this scenario starts (for cleanup on error). */
export interface ServerTracker {
  add(server: ServerProcess): void;
  delete(server: ServerProcess): void;
}

/** Longest a preparation or clean-up step may take, ms. */
const STEP_MS = 15_000;

type Case = 'tryAcquire' | 'acquire' | 'queued waiter';

/**
 * Each call against a server this scenario started itself and froze with SIGSTOP (resumed with
 * SIGCONT afterwards): `tryAcquire`, `acquire({ wait })` of a free key, and a waiter that queued
 * behind a holder before the freeze. Figure: from the call to its rejection (or resolution),
 * against the promised bound `wait + commandTimeout`. Each case gets a fresh application (its
 * own connections) so that one case's aftermath cannot shorten or lengthen the next.
 */
export async function runFrozenServer(
  backend: 'redis' | 'etcd',
  config: FrozenServerConfig,
  servers: ServerTracker,
  log: (message: string) => void,
): Promise<Outcome<FrozenServerResult>[]> {
  const adapter = `ours/${backend}`;
  let server: ServerProcess | undefined;
  try {
    server = backend === 'redis' ? await startRedis() : await startEtcd();
    servers.add(server);
    const address = `127.0.0.1:${server.port}`;
    // Only the frozen backend's field is used; the other points nowhere on purpose.
    const env: BenchEnv = { redisUrl: `redis://${address}`, etcdHost: `http://${address}` };
    log(`${adapter} frozen server: dedicated ${backend} pid ${server.pid} on ${address}`);
    const out: Outcome<FrozenServerResult>[] = [];
    for (const c of ['tryAcquire', 'acquire', 'queued waiter'] as const) {
      const r = await oneCase(c, backend, env, server, config).catch(
        (err: unknown): Outcome<FrozenServerResult> => ({
          adapter,
          error: `frozen ${c}: ${errorMessage(err)}`,
        }),
      );
      out.push(r);
      if ('error' in r) log(`${adapter} frozen ${c}: FAILED ${r.error}`);
      else log(`${adapter} frozen ${r.case}: ${r.thrown} after ${r.elapsedMs.toFixed(0)} ms`);
    }
    return out;
  } catch (err) {
    return [{ adapter, error: `frozen server: ${errorMessage(err)}` }];
  } finally {
    if (server) {
      resumeServer(server);
      await server.stop();
      removeDir(server.dir);
      servers.delete(server);
    }
  }
}

async function oneCase(
  which: Case,
  backend: 'redis' | 'etcd',
  env: BenchEnv,
  server: ServerProcess,
  config: FrozenServerConfig,
): Promise<FrozenServerResult> {
  const service = await openLockService(backend, env, config.tuning);
  const probe = await QueueDepthProbe.open(backend, env);
  const { locks, lib } = service;
  const key = `bench:${Date.now().toString(36)}:frozen:${backend}:${which.replace(' ', '-')}`;
  const ttl = config.ttl;
  try {
    // Warm: connections up, scripts loaded, etcd session open, before anything is frozen.
    await withTimeout(
      locks.acquire(`${key}:warm`, { ttl, wait: 0 }).then((l) => l.release()),
      STEP_MS,
      'warm-up',
    );
    let wait = 0;
    let start: number;
    let call: Promise<unknown>;
    if (which === 'queued waiter') {
      await withTimeout(locks.acquire(key, { ttl, wait: 0 }), STEP_MS, 'holder acquire');
      wait = config.queuedWait;
      start = nowMs();
      call = locks.acquire(key, { ttl, wait });
      await probe.until(lib.DEFAULT_KEY_PREFIX + key, 1, Math.min(STEP_MS, wait));
      process.kill(server.pid, 'SIGSTOP');
    } else {
      process.kill(server.pid, 'SIGSTOP');
      wait = which === 'acquire' ? config.acquireWait : 0;
      start = nowMs();
      call =
        which === 'acquire' ? locks.acquire(key, { ttl, wait }) : locks.tryAcquire(key, { ttl });
    }
    const settled = await withTimeout(
      call.then(
        (value) => ({ at: nowMs(), value, err: undefined as unknown }),
        (err: unknown) => ({ at: nowMs(), value: undefined, err }),
      ),
      config.hangMs,
      'call',
    ).catch(() => undefined);
    let thrown: string;
    if (!settled) thrown = `no answer within ${config.hangMs} ms`;
    else if (settled.err === undefined)
      thrown = settled.value === null ? 'resolved null (busy)' : 'resolved a lock';
    else thrown = settled.err instanceof Error ? settled.err.name : String(settled.err);
    return {
      adapter: `ours/${backend}`,
      backend,
      case: which === 'tryAcquire' ? 'tryAcquire' : `${which} wait ${wait}`,
      waitMs: wait,
      commandTimeoutMs: config.tuning.commandTimeout,
      boundMs: wait + config.tuning.commandTimeout,
      elapsedMs: (settled?.at ?? nowMs()) - start,
      thrown,
      backendError: settled?.err instanceof lib.LockBackendError,
    };
  } finally {
    resumeServer(server);
    probe.close();
    await withTimeout(service.close(), STEP_MS, 'close').catch(() => undefined);
  }
}
