import type { INestApplication } from '@nestjs/common';
import Redis from 'ioredis';
import {
  LockBackendError,
  LockNotAcquiredError,
  LockService,
  RedlockLockBackend,
} from 'nestjs-distributed-lock';
import { timed, within } from '../support/async.helpers';
import { createLockApp } from '../support/test-app';
import { newToken, uniqueKey } from '../support/test-ids';
import { startRedisMasters, type RedisMastersTopology } from '../servers/redis-masters.topology';
import { MASTERS, mastersHolding } from './redlock-test.helpers';

/** Per-master bound of these tests' clients: a frozen master costs this much, no more. */
const COMMAND_TIMEOUT = 500;
/** Slack for a loaded 2-core machine; far below a hang or a holder's 20 s ttl. */
const MARGIN = 3000;
const LONG_TTL = 20_000;

describe('RedlockLockBackend on 5 masters with some stopped or restarted', () => {
  let topology: RedisMastersTopology;
  const apps: INestApplication[] = [];
  const backends: RedlockLockBackend[] = [];
  const raws: Redis[] = [];
  const open = async (): Promise<LockService> => {
    const { app, locks } = await createLockApp({
      backend: { type: 'redlock', urls: topology.urls, commandTimeout: COMMAND_TIMEOUT },
      ttl: LONG_TTL,
      checkBackend: false,
    });
    apps.push(app);
    return locks;
  };
  const backend = (): RedlockLockBackend => {
    const b = new RedlockLockBackend({ urls: topology.urls, commandTimeout: COMMAND_TIMEOUT });
    backends.push(b);
    return b;
  };
  /** A plain client per master, for looking at (and planting) keys directly. */
  const masters = (): Redis[] => {
    if (raws.length === 0) {
      for (const url of topology.urls) {
        const raw = new Redis(url, { maxRetriesPerRequest: 1 });
        raw.on('error', () => undefined);
        raws.push(raw);
      }
    }
    return raws;
  };

  beforeAll(async () => {
    topology = await startRedisMasters(MASTERS);
  });
  afterEach(async () => {
    for (let i = 0; i < MASTERS; i++) topology.thaw(i);
    await Promise.all(apps.splice(0).map((app) => app.close()));
    await Promise.all(backends.splice(0).map((b) => b.close()));
  });
  afterAll(async () => {
    for (const raw of raws.splice(0)) raw.disconnect();
    await topology.stop();
  });

  it.each([1, 2])(
    'with %i master(s) frozen (SIGSTOP), acquire, exclusion, extend and release still work',
    async (frozen) => {
      const [a, b] = [await open(), await open()];
      const key = uniqueKey(`frozen-${frozen}`);
      // Warm the connections first, the wake-up subscriptions included (b waits once), so the
      // frozen masters are a stall, not a connect that a loaded machine makes slow.
      const warm = await a.acquire(`${key}:warm`);
      const warmWaiter = b.acquire(`${key}:warm`, { wait: 5000 });
      await warm.release();
      await (await warmWaiter).release();
      for (let i = 0; i < frozen; i++) topology.freeze(i);

      const lock = await a.acquire(key, { ttl: 3000, wait: 0 });
      await expect(b.acquire(key, { wait: 0 })).rejects.toBeInstanceOf(LockNotAcquiredError);
      await lock.extend(LONG_TTL);
      expect(lock.held).toBe(true);
      const waiting = b.acquire(key, { wait: 10_000 });
      await lock.release();
      // Woken through the masters that answer; the frozen ones cost no more than they did.
      const next = await within(MARGIN, waiting, 'waiter after the release');
      expect(next.held).toBe(true);
      await next.release();
    },
  );

  it('with 3 masters frozen there is no quorum: acquire rejects with LockBackendError naming them, within wait + commandTimeout', async () => {
    const locks = await open();
    const key = uniqueKey('no-quorum');
    await (await locks.acquire(`${key}:warm`)).release();
    for (let i = 0; i < 3; i++) topology.freeze(i);
    const wait = 1000;
    const { ms, error } = await timed(
      within(wait + COMMAND_TIMEOUT + 10_000, locks.acquire(key, { wait }), 'acquire'),
    );
    expect(error).toBeInstanceOf(LockBackendError);
    expect(error).not.toBeInstanceOf(LockNotAcquiredError);
    const message = (error as Error).message;
    expect(message).toMatch(/no quorum: 3 of 5 masters failed/);
    for (const url of topology.urls.slice(0, 3)) expect(message).toContain(url.slice(8));
    expect(ms).toBeLessThan(wait + COMMAND_TIMEOUT + MARGIN);
  });

  it("a release that finds no quorum (3 masters frozen during the work) never masks the work's own error", async () => {
    const locks = await open();
    const key = uniqueKey('masking');
    const work = locks.withLock(key, () => {
      for (let i = 0; i < 3; i++) topology.freeze(i);
      throw new Error('the work failed');
    });
    await expect(within(COMMAND_TIMEOUT + MARGIN, work, 'withLock')).rejects.toThrow(
      'the work failed',
    );
    // Successful work whose release finds no quorum still returns its result (the lock ends
    // with its ttl on the frozen masters).
    for (let i = 0; i < 3; i++) topology.thaw(i);
    const done = locks.withLock(`${key}:ok`, () => {
      for (let i = 0; i < 3; i++) topology.freeze(i);
      return 'result';
    });
    expect(await within(COMMAND_TIMEOUT + MARGIN, done, 'withLock')).toBe('result');
  });

  it('a grant whose validity (ttl − elapsed − 1 % − 2 ms) is not positive is no grant', async () => {
    const redlock = backend();
    const key = uniqueKey('validity');
    const token = newToken('validity');
    // 2 ms less the drift allowance (2.02 ms) leaves no validity, however fast the masters are.
    expect(await redlock.acquire({ keys: [key], token, ttl: 2 })).toEqual({
      acquired: false,
      retryAfter: expect.any(Number) as number,
    });
    expect((await redlock.acquire({ keys: [key], token, ttl: 5000 })).acquired).toBe(true);
    expect(await redlock.release({ keys: [key], token })).toBe(true);
  });

  it('a failed attempt leaves no partial grant behind, and a retry is not blocked by its own leftover keys', async () => {
    const redlock = backend();
    const raw = masters();
    const key = uniqueKey('partial');
    const stored = `{${key}}`;
    // Another owner holds a quorum (masters 0-2): our attempt is granted on 3 and 4 only.
    await Promise.all(raw.slice(0, 3).map((r) => r.set(stored, 'rival', 'PX', LONG_TTL)));
    const token = newToken('partial');
    const result = await redlock.acquire({ keys: [key], token, ttl: LONG_TTL });
    expect(result.acquired).toBe(false);
    expect(await Promise.all(raw.map((r) => r.get(stored)))).toEqual([
      'rival',
      'rival',
      'rival',
      null,
      null,
    ]);

    // The rival goes; our token's own keys left on two masters (a grant whose answer was lost)
    // must not block our retry, which takes the other three.
    await Promise.all(raw.slice(0, 3).map((r) => r.del(stored)));
    await Promise.all(raw.slice(3).map((r) => r.set(stored, token, 'PX', LONG_TTL)));
    const retry = await redlock.acquire({ keys: [key], token, ttl: LONG_TTL });
    expect(retry).toEqual({ acquired: true, fencingTokens: [] });
    expect(await redlock.release({ keys: [key], token })).toBe(true);
    expect(await mastersHolding(raw, key)).toBe(0);
  });

  it('a master restarted empty (SIGKILL, no persistence) does not let a second client in while a quorum of the others holds', async () => {
    const [a, b] = [await open(), await open()];
    const key = uniqueKey('restart');
    const lock = await a.acquire(key, { ttl: LONG_TTL });
    const raw = masters();
    const stored = `{lock:${key}}`;
    expect(await mastersHolding(raw, key)).toBe(MASTERS);
    for (const i of [0, 1]) {
      await topology.restartEmpty(i);
      // The restarted master lost the grant and would give it to b; the others still refuse b.
      expect(await raw[i].get(stored)).toBeNull();
      await expect(b.acquire(key, { wait: 500 })).rejects.toBeInstanceOf(LockNotAcquiredError);
      expect(lock.held).toBe(true);
    }
    // The holder still extends on its quorum (2, 3, 4) and releases.
    await lock.extend(LONG_TTL);
    expect(lock.held).toBe(true);
    await lock.release();
    const next = await b.acquire(key, { wait: 0 });
    await next.release();
  });
});
