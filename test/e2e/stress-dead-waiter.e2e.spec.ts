import { Etcd3 } from 'etcd3';
import Redis from 'ioredis';
import { INestApplication } from '@nestjs/common';
import type { Lock, LockBackendConfig, LockService } from 'nestjs-distributed-lock';
import { eventually, within } from '../support/async.helpers';
import { createLockApp } from '../support/test-app';
import { etcdHosts, redisUrl } from '../support/test-env';
import { uniqueKey } from '../support/test-ids';
import { LockClientProcess } from './fixtures/lock-client.process';

/** How long after `releasedAt` the acquisition ended, and how. */
async function outcomeAfter(
  acquiring: Promise<Lock>,
  releasedAt: () => number,
): Promise<{ lock?: Lock; summary: string; ms: number }> {
  const settled = await acquiring.then(
    (lock) => ({ lock, how: 'granted', at: Date.now() }),
    (err: unknown) => ({ lock: undefined, how: (err as Error).name, at: Date.now() }),
  );
  const ms = settled.at - releasedAt();
  return { lock: settled.lock, ms, summary: `${settled.how} ${ms} ms after the release` };
}

/**
 * README "Waiting is event-driven and fair": a waiter that vanished blocks the queue for at most
 * the claim window (Redis) or its session lease (etcd). D queues in a child process and is
 * SIGKILLed; W queues behind it; H releases. W must be granted within that bound of the release,
 * not when the holder's old ttl would have ended.
 */
describe('A waiter queued behind a SIGKILLed waiter', () => {
  const apps: INestApplication[] = [];
  const children: LockClientProcess[] = [];

  afterEach(async () => {
    for (const child of children.splice(0)) await child.stop();
    for (const app of apps.splice(0)) await app.close();
  });

  async function instances(backend: LockBackendConfig): Promise<[LockService, LockService]> {
    const h = await createLockApp({ backend });
    const w = await createLockApp({ backend });
    apps.push(h.app, w.app);
    return [h.locks, w.locks];
  }

  /**
   * H holds, D queues then dies (SIGKILL) or freezes (SIGSTOP: its connections stay open, so
   * nothing on the server can tell it is gone), W queues; returns W's outcome measured from H's
   * release.
   */
  async function scenario(
    backend: LockBackendConfig,
    queueLength: (key: string) => Promise<number>,
    waitOfW: number,
    fault: 'SIGKILL' | 'SIGSTOP' = 'SIGKILL',
  ): Promise<{ lock?: Lock; summary: string; ms: number }> {
    const [h, w] = await instances(backend);
    const d = await LockClientProcess.start({ backend });
    children.push(d);
    const key = uniqueKey('dead-waiter');
    const holder = await h.acquire(key, { ttl: 30_000 });
    d.send({ op: 'acquire', key, ttl: 30_000, wait: 30_000 });
    await eventually(async () => (await queueLength(key)) === 2, 5000, 'D queued');
    // afterEach SIGKILLs D, frozen or not.
    if (fault === 'SIGKILL') await d.stop('SIGKILL');
    else process.kill(d.pid, 'SIGSTOP');
    let releasedAt = 0;
    const outcome = outcomeAfter(w.acquire(key, { ttl: 30_000, wait: waitOfW }), () => releasedAt);
    await eventually(async () => (await queueLength(key)) === 3, 5000, 'W queued');
    releasedAt = Date.now();
    await holder.release();
    const result = await within(waitOfW + 5000, outcome, 'W');
    await result.lock?.release();
    return result;
  }

  it.each([
    ['killed (SIGKILL)', 'SIGKILL'],
    ['frozen (SIGSTOP)', 'SIGSTOP'],
  ] as const)(
    'on Redis, is granted within the claim window of the release when the waiter ahead is %s',
    async (_label, fault) => {
      const claimWindow = 2000;
      const url = redisUrl();
      const admin = new Redis(url);
      try {
        // Holder + queued waiters: the lock hash exists, and the queue holds one member per waiter.
        const queueLength = async (key: string): Promise<number> =>
          (await admin.exists(`{lock:${key}}`)) + (await admin.zcard(`{lock:${key}}:q`));
        const { summary, ms } = await scenario(
          { type: 'redis', url, claimWindow },
          queueLength,
          6000,
          fault,
        );
        expect(summary).toMatch(/^granted /);
        expect(ms).toBeLessThan(claimWindow + 1500);
      } finally {
        admin.disconnect();
      }
    },
    20_000,
  );

  it('on etcd, is granted within the session ttl of the release', async () => {
    const sessionTtl = 3000;
    const hosts = etcdHosts();
    const admin = new Etcd3({ hosts });
    try {
      // One member key per holder or waiter.
      const queueLength = (key: string): Promise<number> =>
        admin.getAll().prefix(`lock:${key}\u0000`).count();
      const { summary, ms } = await scenario(
        { type: 'etcd', hosts, sessionTtl },
        queueLength,
        sessionTtl + 5000,
      );
      expect(summary).toMatch(/^granted /);
      expect(ms).toBeLessThan(sessionTtl + 1500);
    } finally {
      admin.close();
    }
  }, 25_000);
});
