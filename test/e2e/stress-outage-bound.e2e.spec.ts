import Redis from 'ioredis';
import { INestApplication } from '@nestjs/common';
import { LockBackendError, LockService } from 'nestjs-distributed-lock';
import { startEtcd } from '../servers/etcd.server';
import { startRedis } from '../servers/redis.server';
import { removeDir, ServerProcess } from '../servers/server.process';
import { eventually, timed, within } from '../support/async.helpers';
import { createLockApp } from '../support/test-app';
import { uniqueKey } from '../support/test-ids';

/** How a call ended and how long it took, as one string a failure message shows. */
async function outcome(call: () => Promise<unknown>): Promise<{ summary: string; ms: number }> {
  const { ms, ...ended } = await timed(call());
  const how = !('error' in ended)
    ? 'resolved'
    : ended.error instanceof LockBackendError
      ? 'LockBackendError'
      : `other: ${String(ended.error)}`;
  return { summary: `${how} after ${ms} ms`, ms };
}

/** Freezes `server` (SIGSTOP) for the duration of `fn`, then thaws it (SIGCONT), always. */
async function frozen<T>(server: ServerProcess, fn: () => Promise<T>): Promise<T> {
  process.kill(server.pid, 'SIGSTOP');
  try {
    return await fn();
  } finally {
    process.kill(server.pid, 'SIGCONT');
  }
}

/** Slack for scheduling on a busy 2-core machine; far below the extra commandTimeout of the bug. */
const MARGIN = 600;

/**
 * README (Redis, "Failures"): a Redis that is down or frozen yields LockBackendError within the
 * caller's wait plus commandTimeout. The clean-up of the failed attempt (cancel) may run after
 * that, in the background, once the server answers again; it must not delay the caller.
 */
describe('Bounded errors while Redis is frozen (SIGSTOP)', () => {
  const commandTimeout = 2000;
  let server: ServerProcess;
  let admin: Redis;
  const apps: INestApplication[] = [];
  let a: LockService;
  let b: LockService;

  beforeAll(async () => {
    server = await startRedis();
    const url = `redis://127.0.0.1:${server.port}`;
    for (let i = 0; i < 2; i++) {
      apps.push((await createLockApp({ backend: { type: 'redis', url, commandTimeout } })).app);
    }
    a = apps[0].get(LockService);
    b = apps[1].get(LockService);
    admin = new Redis(url);
    // Connections and scripts ready before the first freeze.
    await (await a.acquire(uniqueKey('warm'))).release();
    await (await b.acquire(uniqueKey('warm'))).release();
  });

  afterAll(async () => {
    for (const app of apps) await app.close();
    admin.disconnect();
    await server.stop();
    removeDir(server.dir);
  });

  /** Whether any of the lock's Redis keys (README "Key layout") still exists. */
  async function leftovers(key: string, parts: readonly string[]): Promise<string[]> {
    const found: string[] = [];
    for (const part of parts) {
      const redisKey = `{lock:${key}}${part}`;
      if ((await admin.exists(redisKey)) === 1) found.push(redisKey);
    }
    return found;
  }

  it('rejects tryAcquire within commandTimeout, and cleans up the grant once Redis is back', async () => {
    const key = uniqueKey('frozen-try');
    const { summary, ms } = await frozen(server, () =>
      outcome(() => within(15_000, a.tryAcquire(key), 'tryAcquire')),
    );
    expect(summary).toMatch(/^LockBackendError /);
    expect(ms).toBeLessThan(commandTimeout + MARGIN);
    // The attempt ran once Redis thawed and may have granted the key: the clean-up releases it.
    await eventually(async () => (await leftovers(key, ['', ':q', ':w'])).length === 0, 5000, key);
  }, 20_000);

  it('rejects acquire({ wait: 500 }) within wait + commandTimeout', async () => {
    const key = uniqueKey('frozen-wait');
    const wait = 500;
    const { summary, ms } = await frozen(server, () =>
      outcome(() => within(15_000, a.acquire(key, { wait }), 'acquire')),
    );
    expect(summary).toMatch(/^LockBackendError /);
    expect(ms).toBeLessThan(wait + commandTimeout + MARGIN);
    await eventually(async () => (await leftovers(key, ['', ':q', ':w'])).length === 0, 5000, key);
  }, 20_000);

  it('rejects a waiter queued before the freeze within wait + commandTimeout, and leaves no queue entry', async () => {
    const key = uniqueKey('frozen-queued');
    const holder = await a.acquire(key, { ttl: 30_000 });
    const wait = 1000;
    const started = Date.now();
    const waiting = outcome(() => within(15_000, b.acquire(key, { wait }), 'waiter'));
    await eventually(async () => (await admin.zcard(`{lock:${key}}:q`)) === 1, 2000, 'queued');
    const { summary } = await frozen(server, () => waiting);
    const ms = Date.now() - started;
    expect(summary).toMatch(/^LockBackendError /);
    expect(ms).toBeLessThan(wait + commandTimeout + MARGIN);
    // The waiter's entry is gone while the holder still holds...
    await eventually(async () => (await leftovers(key, [':q', ':w'])).length === 0, 5000, key);
    await holder.release();
    // ...so the release hands the key to nobody.
    expect(await leftovers(key, ['', ':q', ':w'])).toEqual([]);
  }, 20_000);
});

/** README (etcd): an unreachable etcd gives LockBackendError within commandTimeout per request. */
describe('Bounded errors while etcd is frozen (SIGSTOP)', () => {
  const commandTimeout = 1000;
  let server: ServerProcess;
  let app: INestApplication;
  let locks: LockService;

  beforeAll(async () => {
    server = await startEtcd();
    ({ app, locks } = await createLockApp({
      backend: { type: 'etcd', hosts: [`http://127.0.0.1:${server.port}`], commandTimeout },
    }));
    // Session lease open, so a tryAcquire is one request.
    await (await locks.acquire(uniqueKey('warm'))).release();
  });

  afterAll(async () => {
    await app.close();
    await server.stop();
    removeDir(server.dir);
  });

  it('rejects tryAcquire within commandTimeout', async () => {
    const { summary, ms } = await frozen(server, () =>
      outcome(() => within(15_000, locks.tryAcquire(uniqueKey('frozen-etcd')), 'tryAcquire')),
    );
    expect(summary).toMatch(/^LockBackendError /);
    expect(ms).toBeLessThan(commandTimeout + MARGIN);
  }, 20_000);
});
