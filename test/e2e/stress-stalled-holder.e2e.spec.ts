import { Etcd3 } from 'etcd3';
import Redis from 'ioredis';
import { INestApplication } from '@nestjs/common';
import type { Lock, LockBackendConfig } from 'nestjs-distributed-lock';
import { eventually, within } from '../support/async.helpers';
import { createLockApp } from '../support/test-app';
import { etcdHosts, redisUrl } from '../support/test-env';
import { uniqueKey } from '../support/test-ids';
import { LockClientProcess } from './fixtures/lock-client.process';

/** What the stalled holder saw in the first tick after its event loop came back. */
interface StallReport {
  held: boolean;
  aborted: boolean;
  savedAborted: boolean;
  at: number;
}

/**
 * README "Renewal with loss detection": the holder learns of the loss before anyone else can be
 * granted the lock. A holder whose event loop is blocked (GC pause, Atomics.wait) cannot run a
 * timer, so the first code it runs after the pause must already see `held === false` and an
 * aborted signal, both through `lock.signal` and through a signal it kept from before. The
 * holder runs in a child process, so that its stall does not block the test.
 */
describe('A holder whose event loop stalls past its lock', () => {
  const apps: INestApplication[] = [];
  const children: LockClientProcess[] = [];

  afterEach(async () => {
    for (const child of children.splice(0)) await child.stop();
    for (const app of apps.splice(0)) await app.close();
  });

  async function stalledHolder(
    backend: LockBackendConfig,
    key: string,
    ttl: number,
  ): Promise<{ child: LockClientProcess; fencingToken: number }> {
    const child = await LockClientProcess.start({ backend });
    children.push(child);
    child.send({ op: 'acquire', key, ttl, wait: 0 });
    const acquired = await child.next('acquired', 10_000);
    return { child, fencingToken: acquired.fencingToken as number };
  }

  async function stall(child: LockClientProcess, ms: number): Promise<StallReport> {
    child.send({ op: 'stall', ms });
    return (await child.next('stalled', ms + 10_000)) as unknown as StallReport;
  }

  /** A waiter in the test process queued for the key, with its grant time. */
  function waiterFor(
    backend: LockBackendConfig,
    key: string,
    wait: number,
  ): Promise<{ lock: Lock; at: number }> {
    const waiting = createLockApp({ backend }).then(({ app, locks }) => {
      apps.push(app);
      return locks.acquire(key, { wait }).then((lock) => ({ lock, at: Date.now() }));
    });
    // Awaited by the test; this only keeps an early failure elsewhere from leaving it unhandled.
    waiting.catch(() => undefined);
    return waiting;
  }

  /**
   * The holder (ttl `ttl`) stalls for `stallMs` while a waiter in the test process, queued first
   * (`queued` says when), is granted the lock; the holder's first look after the pause must say
   * it lost the lock, through `held`, `lock.signal` and a signal kept from before.
   */
  async function expectLostAfterStall(
    backend: LockBackendConfig,
    key: string,
    ttl: number,
    stallMs: number,
    queued: () => Promise<boolean>,
  ): Promise<void> {
    const { child, fencingToken } = await stalledHolder(backend, key, ttl);
    const waiting = waiterFor(backend, key, 20_000);
    await eventually(queued, 5000, 'waiter queued');
    const report = await stall(child, stallMs);
    const granted = await within(10_000, waiting, 'waiter');
    // The other instance got the lock while the holder was paused...
    expect(granted.lock.fencingToken).toBeGreaterThan(fencingToken);
    expect(granted.at).toBeLessThan(report.at);
    // ...so the holder's first look after the pause must say so.
    expect({
      held: report.held,
      aborted: report.aborted,
      savedAborted: report.savedAborted,
    }).toEqual({ held: false, aborted: true, savedAborted: true });
    await granted.lock.release();
  }

  it('on etcd, sees the lock lost as soon as it runs again after its session lease ran out', async () => {
    const sessionTtl = 2000;
    const hosts = etcdHosts();
    const backend: LockBackendConfig = { type: 'etcd', hosts, sessionTtl };
    const admin = new Etcd3({ hosts });
    try {
      const key = uniqueKey('stall-etcd');
      await expectLostAfterStall(
        backend,
        key,
        30_000,
        sessionTtl + 4000,
        async () => (await admin.getAll().prefix(`lock:${key}\u0000`).count()) === 2,
      );
    } finally {
      admin.close();
    }
  }, 25_000);

  it('on Redis, sees the lock lost as soon as it runs again after its ttl ran out', async () => {
    const url = redisUrl();
    const backend: LockBackendConfig = { type: 'redis', url };
    const admin = new Redis(url);
    try {
      const key = uniqueKey('stall-redis');
      const ttl = 2000;
      await expectLostAfterStall(
        backend,
        key,
        ttl,
        ttl + 2000,
        async () => (await admin.zcard(`{lock:${key}}:q`)) === 1,
      );
    } finally {
      admin.disconnect();
    }
  }, 25_000);

  it('on memory, sees the lock lost as soon as it runs again after its ttl ran out', async () => {
    // The memory backend excludes within one process only, so there is no waiter elsewhere:
    // past its ttl the lock is free for anyone in the holder's process.
    const ttl = 1000;
    const { child } = await stalledHolder({ type: 'memory' }, uniqueKey('stall-memory'), ttl);
    const report = await stall(child, ttl + 1500);
    expect({
      held: report.held,
      aborted: report.aborted,
      savedAborted: report.savedAborted,
    }).toEqual({ held: false, aborted: true, savedAborted: true });
  }, 20_000);
});
