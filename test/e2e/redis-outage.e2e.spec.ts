import {
  LockBackendError,
  LockLostError,
  LockNotAcquiredError,
  LockService,
} from 'nestjs-distributed-lock';
import { INestApplication } from '@nestjs/common';
import { startRedis } from '../servers/redis.server';
import { ServerProcess, removeDir } from '../servers/server.process';
import { eventually, sleep, within } from '../support/async.helpers';
import { createLockApp } from '../support/test-app';
import { uniqueKey } from '../support/test-ids';

/**
 * What an application sees when its Redis goes away: a server of its own, stopped and restarted
 * on the same port, under two Nest applications sharing it.
 */
describe('Redis outages, through the module', () => {
  let server: ServerProcess;
  let url: string;
  const apps: INestApplication[] = [];
  let a: LockService;
  let b: LockService;

  beforeAll(async () => {
    server = await startRedis();
    url = `redis://127.0.0.1:${server.port}`;
    for (let i = 0; i < 2; i++) {
      const created = await createLockApp({ backend: { type: 'redis', url, commandTimeout: 500 } });
      apps.push(created.app);
    }
    a = apps[0].get(LockService);
    b = apps[1].get(LockService);
  });

  afterAll(async () => {
    for (const app of apps) await app.close();
    await server.stop();
    removeDir(server.dir);
  });

  async function restart(): Promise<void> {
    await server.stop();
    server = await startRedis({ port: server.port, dir: server.dir });
  }

  it('gives a waiter a typed error, in bounded time, when Redis stops while it waits', async () => {
    const key = uniqueKey('outage');
    const holder = await a.acquire(key, { ttl: 1000, renew: false });
    const started = Date.now();
    const waiting = b.acquire(key, { wait: 10_000 }).catch((e: unknown) => e);
    await sleep(50);
    await server.stop();
    // The waiter re-checks at the holder's ttl at the latest and then meets the outage.
    const error = await within(10_000 + 500 + 3000, waiting, 'waiter during outage');
    expect(error).toBeInstanceOf(LockBackendError);
    expect(error).not.toBeInstanceOf(LockNotAcquiredError);
    expect(Date.now() - started).toBeLessThan(10_000 + 500 + 3000);
    server = await startRedis({ port: server.port, dir: server.dir });
    await eventually(
      async () =>
        (await a.tryAcquire(uniqueKey('probe')).then(
          (l) => l?.release(),
          () => 'down',
        )) !== 'down',
      15_000,
      'Redis back',
    );
    await expect(holder.release()).rejects.toBeInstanceOf(LockLostError);
  });

  it('tells the holder its lock was lost when Redis restarts without persistence', async () => {
    const key = uniqueKey('restart');
    const lock = await a.acquire(key, { ttl: 1500 });
    await restart();
    const reason = await within(
      10_000,
      new Promise((r) => lock.signal.addEventListener('abort', () => r(lock.signal.reason))),
      'loss after restart',
    );
    expect(reason).toBeInstanceOf(LockLostError);
    await expect(lock.release()).rejects.toBeInstanceOf(LockLostError);
    // Another instance can take the key, with a higher fencing token.
    const next = await within(10_000, b.acquire(key, { wait: 5000 }), 'next holder');
    expect(next.fencingToken).toBeGreaterThan(lock.fencingToken);
    await next.release();
  });

  it('keeps working when the script cache is flushed between calls', async () => {
    const key = uniqueKey('flush');
    const first = await a.acquire(key);
    await first.release();
    const { default: Redis } = await import('ioredis');
    const admin = new Redis(url);
    try {
      await admin.script('FLUSH');
    } finally {
      admin.disconnect();
    }
    const second = await a.acquire(key);
    expect(second.fencingToken).toBeGreaterThan(first.fencingToken);
    await second.release();
  });
});
