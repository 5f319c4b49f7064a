/**
 * A worker process of the multi-process contended scenario: it creates one contender (by id) and
 * one counter connection, and runs its share of workers when told. Started by the orchestrator
 * with child_process.fork, stopped by PID.
 */
import { Redis } from 'ioredis';
import { createAdapter } from '../peers/adapter.registry';
import type { BenchEnv, LockAdapter } from '../peers/lock-adapter.interface';
import { serveParent } from '../support/child.pool';
import { epochMs } from '../support/time.util';
import { ContendedTask, runContendedWorkers } from './contended.worker';

let adapter: LockAdapter | undefined;
let counter: Redis | undefined;

async function closeAdapter(): Promise<void> {
  const current = adapter;
  adapter = undefined;
  await current?.close();
}

serveParent({
  prepare: async (payload) => {
    const { adapterId, env, warmKey, ttl } = payload as {
      adapterId: string;
      env: BenchEnv;
      warmKey: string;
      ttl: number;
    };
    await closeAdapter();
    if (!counter) {
      counter = new Redis(env.redisUrl, { lazyConnect: true });
      await counter.connect();
    }
    adapter = await createAdapter(adapterId, env);
    await adapter.release(await adapter.acquire(warmKey, ttl));
    return true;
  },
  run: async (payload) => {
    if (!adapter || !counter) throw new Error('run before prepare');
    return runContendedWorkers(adapter, counter, payload as ContendedTask);
  },
  // This process's epoch clock, for the orchestrator's estimate of its offset (see clockOffset).
  clock: async () => epochMs(),
  close: async () => {
    await closeAdapter();
    return true;
  },
  exit: async () => {
    await closeAdapter();
    counter?.disconnect();
    return true;
  },
});
