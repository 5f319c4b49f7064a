import {
  LockError,
  LockLostError,
  LockNotAcquiredError,
  LockService,
  LockBackendError,
} from 'nestjs-distributed-lock';
import { INestApplication } from '@nestjs/common';
import { deferred, eventually, sleep, within } from '../support/async.helpers';
import { ObservedBackend } from '../support/observed.backend';
import { createLockApp } from '../support/test-app';
import {
  closeTestBackends,
  sameSlotKeys,
  startTestBackend,
  TEST_BACKENDS,
} from '../support/test-backends';
import { uniqueKey } from '../support/test-ids';

describe.each(TEST_BACKENDS)('LockService on $name', (testBackend) => {
  const fencing = testBackend.fencing !== false;
  const fifo = testBackend.fifoHandoff !== false;
  const apps: INestApplication[] = [];
  let stopBackend: (() => Promise<void>) | undefined;
  let backend: ObservedBackend;
  let locks: LockService;
  let other: LockService; // a second application instance on the same store

  beforeAll(async () => {
    stopBackend = await startTestBackend(testBackend);
    backend = new ObservedBackend(testBackend.connect());
    const first = await createLockApp({ backend, wait: 5000 });
    const second = await createLockApp({ backend: testBackend.connect(), wait: 5000 });
    apps.push(first.app, second.app);
    locks = first.locks;
    other = second.locks;
  });

  afterAll(async () => {
    try {
      for (const app of apps) await app.close();
      await backend.close();
    } finally {
      await stopBackend?.();
    }
  });

  it('grants a lock with a random token, and releases it', async () => {
    const key = uniqueKey();
    const lock = await locks.acquire(key);
    expect(lock.key).toBe(key);
    expect(lock.keys).toEqual([key]);
    // 128 random bits as URL-safe base64; a new one per acquisition.
    expect(lock.token).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(lock.expiresAt).toBeGreaterThan(Date.now());
    expect(await other.isLocked(key)).toBe(true);
    expect(await other.tryAcquire(key)).toBeNull();
    await lock.release();
    expect(lock.signal.aborted).toBe(true);
    expect(await other.isLocked(key)).toBe(false);
    await lock.release(); // idempotent
    const again = await other.acquire(key);
    expect(again.token).not.toBe(lock.token);
    await again.release();
  });

  (fencing ? it : it.skip)(
    'gives each grant a safe-integer fencing token, greater than the last holder’s after a release, a wake-up and an expiry',
    async () => {
      const key = uniqueKey('fencing');
      const first = await locks.acquire(key);
      expect(Number.isSafeInteger(first.fencingToken)).toBe(true);
      expect(first.fencingTokens).toEqual([first.fencingToken]);
      await first.release();
      const second = await other.acquire(key, { ttl: 60_000 });
      expect(second.fencingToken).toBeGreaterThan(first.fencingToken);

      const waiting = locks.acquire(key, { wait: 50_000 });
      await sleep(20);
      await second.release();
      const woken = await within(5000, waiting, 'waiter after release');
      expect(woken.fencingToken).toBeGreaterThan(second.fencingToken);
      await woken.release();

      // The stalled holder's fencing token is stale once its ttl ran out: the next one is higher.
      const stalled = await other.acquire(key, { ttl: 200, renew: false });
      await within(5000, new Promise((r) => stalled.signal.addEventListener('abort', r)), 'loss');
      const next = await locks.acquire(key);
      expect(next.fencingToken).toBeGreaterThan(stalled.fencingToken);
      await next.release();

      const multi = await locks.acquire(sameSlotKeys('fencing-multi', 'a', 'b'));
      expect(multi.fencingTokens).toHaveLength(2);
      expect(multi.fencingTokens.every((t) => Number.isSafeInteger(t))).toBe(true);
      await multi.release();
    },
  );

  (fencing ? it.skip : it)(
    'has no fencing tokens: reading one throws a LockError naming the backend, never a number',
    async () => {
      const [a, b] = sameSlotKeys('no-fencing', 'a', 'b');
      await locks.withLock([a, b], async (outer) => {
        expect(() => outer.fencingToken).toThrow(LockError);
        expect(() => outer.fencingToken).toThrow(
          new RegExp(`the ${testBackend.name} backend issues no fencing tokens`),
        );
        expect(() => outer.fencingTokens).toThrow(LockError);
        // A reentrant handle reads the inherited grant's tokens: it throws the same way.
        await locks.withLock(a, async (inner) => {
          expect(inner.token).toBe(outer.token);
          expect(() => inner.fencingToken).toThrow(LockError);
        });
        expect(outer.held).toBe(true);
        expect(await other.isLocked(b)).toBe(true);
      });
    },
  );

  it('excludes concurrent holders across instances and never overlaps critical sections', async () => {
    const key = uniqueKey('mutex');
    let inside = 0;
    let maxInside = 0;
    let runs = 0;
    const worker = (service: LockService) =>
      service.withLock(key, async () => {
        inside++;
        maxInside = Math.max(maxInside, inside);
        await sleep(2);
        inside--;
        runs++;
      });
    await within(
      20_000,
      Promise.all(Array.from({ length: 20 }, (_, i) => worker(i % 2 ? locks : other))),
      'workers',
    );
    expect(runs).toBe(20);
    expect(maxInside).toBe(1);
  });

  it('runs different keys in parallel', async () => {
    const both = deferred();
    let entered = 0;
    const run = (key: string) =>
      locks.withLock(key, async () => {
        if (++entered === 2) both.resolve();
        await within(5000, both.promise, 'the other key never ran alongside');
      });
    await Promise.all([run(uniqueKey('p')), run(uniqueKey('p'))]);
  });

  it('with `await using`, releases at the end of the block', async () => {
    const key = uniqueKey();
    {
      await using lock = await locks.acquire(key);
      expect(lock.held).toBe(true);
      expect(await other.isLocked(key)).toBe(true);
    }
    expect(await other.isLocked(key)).toBe(false);
  });

  it('gives up after `wait` with LockNotAcquiredError carrying the key', async () => {
    const key = uniqueKey();
    const holder = await locks.acquire(key);
    const error = await other.acquire(key, { wait: 100 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockNotAcquiredError);
    expect((error as LockNotAcquiredError).key).toBe(key);
    expect((error as LockNotAcquiredError).waited).toBeGreaterThanOrEqual(90);
    expect(await other.tryAcquire(key, { wait: 0 })).toBeNull();
    await holder.release();
  });

  it('aborts a wait when the signal fires, and leaves no queue entry behind', async () => {
    const key = uniqueKey();
    const holder = await other.acquire(key);
    const controller = new AbortController();
    const queued = backend.busyAttempts(backend.busyCount + 1);
    const waiting = locks.acquire(key, { wait: 10_000, signal: controller.signal });
    await within(5000, queued, 'waiter queued');
    controller.abort(new Error('caller gave up'));
    await expect(within(3000, waiting, 'abort')).rejects.toThrow('caller gave up');
    // The caller's answer does not wait for the clean-up (on another connection than the
    // holder's, so a release sent now could overtake it): wait for the cancel to be answered.
    await eventually(
      () =>
        backend.calls.some(
          (c) => c.op === 'cancel' && c.settled && c.detail.keys.includes(`lock:${key}`),
        ),
      5000,
      'queue entry cancelled',
    );
    await holder.release();
    // The aborted waiter is not handed the lock: a newcomer gets it at once.
    const next = await other.tryAcquire(key);
    expect(next).not.toBeNull();
    await next?.release();
  });

  it('wakes a waiter on release rather than at the holder ttl', async () => {
    const key = uniqueKey();
    const holder = await locks.acquire(key, { ttl: 60_000 });
    const waiting = other.acquire(key, { wait: 50_000 });
    await sleep(20);
    await holder.release();
    // Without a wake-up the waiter would retry only when the 60 s ttl ends.
    const lock = await within(5000, waiting, 'waiter after release');
    expect(lock.held).toBe(true);
    await lock.release();
  });

  (fifo ? it : it.skip)('serves waiters in arrival order', async () => {
    const key = uniqueKey('fifo');
    const holder = await locks.acquire(key);
    const order: number[] = [];
    const waiters: Promise<void>[] = [];
    for (let i = 0; i < 6; i++) {
      // Start the next waiter only once the previous one has been turned away (and queued).
      const queued = backend.busyAttempts(backend.busyCount + 1);
      waiters.push(
        locks.withLock(key, async () => {
          order.push(i);
          await sleep(1);
        }),
      );
      await within(5000, queued, `waiter ${i} queued`);
    }
    await holder.release();
    await within(20_000, Promise.all(waiters), 'all waiters');
    expect(order).toEqual([0, 1, 2, 3, 4, 5]);
  });

  (fifo ? it.skip : it)(
    'serves every waiter once after the release, in no promised order (no queue)',
    async () => {
      const key = uniqueKey('race');
      const holder = await locks.acquire(key, { ttl: 60_000 });
      const served: number[] = [];
      let inside = 0;
      let maxInside = 0;
      const waiters: Promise<void>[] = [];
      for (let i = 0; i < 6; i++) {
        const turnedAway = backend.busyAttempts(backend.busyCount + 1);
        waiters.push(
          locks.withLock(
            key,
            async () => {
              maxInside = Math.max(maxInside, ++inside);
              served.push(i);
              await sleep(1);
              inside--;
            },
            { wait: 30_000 },
          ),
        );
        await within(5000, turnedAway, `waiter ${i} turned away`);
      }
      await holder.release();
      // Well before the holder's 60 s ttl: the release wakes them.
      await within(20_000, Promise.all(waiters), 'all waiters');
      expect([...served].sort()).toEqual([0, 1, 2, 3, 4, 5]);
      expect(maxInside).toBe(1);
    },
  );

  it('renews a lock while work runs past its ttl', async () => {
    const key = uniqueKey();
    const extendsBefore = backend.count('extend');
    await locks.withLock(
      key,
      async (lock) => {
        await sleep(2000);
        expect(lock.signal.aborted).toBe(false);
        expect(await other.tryAcquire(key)).toBeNull();
      },
      { ttl: 600 },
    );
    expect(backend.count('extend') - extendsBefore).toBeGreaterThanOrEqual(2);
  });

  it('with renew: false, lets the lock expire and reports the loss', async () => {
    const key = uniqueKey();
    const lock = await locks.acquire(key, { ttl: 200, renew: false });
    const lost = await within(
      5000,
      new Promise((r) => lock.signal.addEventListener('abort', () => r(lock.signal.reason))),
      'loss',
    );
    expect(lost).toBeInstanceOf(LockLostError);
    await eventually(async () => !(await other.isLocked(key)), 3000, 'key expired');
    const next = await other.acquire(key);
    expect(next.token).not.toBe(lock.token);
    await expect(lock.release()).rejects.toBeInstanceOf(LockLostError);
    await next.release();
  });

  it('aborts the signal at once when a renewal finds the lock taken, and withLock throws LockLostError after the work', async () => {
    const key = uniqueKey();
    let sawAbort: unknown;
    const result = locks.withLock(
      key,
      async (lock) => {
        // Another owner takes over: the lock is gone behind our back (as after an expiry).
        await backend.inner.release({ keys: [`lock:${key}`], token: lock.token });
        const thief = await other.acquire(key, { ttl: 60_000 });
        await within(
          5000,
          new Promise((r) => lock.signal.addEventListener('abort', r)),
          'signal abort',
        );
        sawAbort = lock.signal.reason;
        await thief.release();
        return 'work done';
      },
      { ttl: 1000 },
    );
    await expect(result).rejects.toBeInstanceOf(LockLostError);
    expect(sawAbort).toBeInstanceOf(LockLostError);
  });

  it('lets the work’s own error win over a loss', async () => {
    const key = uniqueKey();
    const result = locks.withLock(
      key,
      async (lock) => {
        await backend.inner.release({ keys: [`lock:${key}`], token: lock.token });
        await lock.extend().catch(() => undefined);
        throw new Error('work failed');
      },
      { ttl: 5000 },
    );
    await expect(result).rejects.toThrow('work failed');
  });

  it('ends the lock by its local validity deadline when renewals cannot reach the backend', async () => {
    const key = uniqueKey();
    const lock = await locks.acquire(key, { ttl: 400 });
    const expiresAt = lock.expiresAt;
    backend.failExtend = new LockBackendError(backend.name, 'extend', 'unreachable (injected)');
    try {
      const reason = await within(
        5000,
        new Promise((r) => lock.signal.addEventListener('abort', () => r(lock.signal.reason))),
        'validity abort',
      );
      expect(reason).toBeInstanceOf(LockLostError);
      expect((reason as LockLostError).reason).toMatch(/validity/);
      // The abort is scheduled for the local deadline, which lies before the server-side expiry.
      expect(expiresAt).toBeLessThanOrEqual(Date.now() + 5);
    } finally {
      backend.failExtend = undefined;
    }
    await expect(lock.release()).rejects.toBeInstanceOf(LockLostError);
  });

  it('cleans up a grant whose answer was lost, instead of leaving it held by nobody', async () => {
    const key = uniqueKey('ghost');
    const flaky = new ObservedBackend(testBackend.connect());
    const realAcquire = flaky.acquire.bind(flaky);
    // The request reaches the server and is applied, but its answer never comes back.
    flaky.acquire = async (request) => {
      await realAcquire(request);
      throw new Error('connection reset before the reply (injected)');
    };
    const { app, locks: flakyLocks } = await createLockApp({ backend: flaky });
    try {
      await expect(flakyLocks.acquire(key, { wait: 0 })).rejects.toBeInstanceOf(LockBackendError);
      // The clean-up runs behind the caller's answer, at once.
      expect(flaky.count('cancel')).toBe(1);
      await eventually(
        async () => !(await other.isLocked(key)),
        5000,
        'abandoned grant cleaned up',
      );
      const next = await other.tryAcquire(key);
      expect(next).not.toBeNull();
      await next?.release();
    } finally {
      await app.close();
    }
  });

  it('is reentrant within one async call chain and makes no second grant', async () => {
    const key = uniqueKey();
    const grantsBefore = backend.count('acquire');
    await locks.withLock(key, async (outer) => {
      await locks.withLock(key, async (inner) => {
        expect(inner.token).toBe(outer.token);
        expect(locks.current()).toBe(inner);
      });
      expect(outer.held).toBe(true);
      expect(await other.isLocked(key)).toBe(true);
    });
    expect(backend.count('acquire') - grantsBefore).toBe(1);
    expect(await other.isLocked(key)).toBe(false);
  });

  it('does not let a concurrent chain re-enter a held key', async () => {
    const key = uniqueKey();
    const lock = await locks.acquire(key);
    // A separate chain (not inside withLock) must wait like anyone else.
    expect(await locks.tryAcquire(key)).toBeNull();
    await lock.release();
  });

  it('takes multi-key locks all or none, in canonical order', async () => {
    const [a, b] = sameSlotKeys('multi', 'a', 'b');
    const lock = await locks.acquire([b, a, b]);
    expect(lock.keys).toEqual([a, b].sort());
    expect(await other.isLocked(a)).toBe(true);
    expect(await other.isLocked(b)).toBe(true);
    await lock.release();

    const holdB = await other.acquire(b);
    expect(await locks.tryAcquire([a, b])).toBeNull();
    expect(await other.isLocked(a)).toBe(false); // nothing half-taken
    await holdB.release();
  });

  it('does not deadlock callers locking [a, b] and [b, a]', async () => {
    const [a, b] = sameSlotKeys('deadlock', 'a', 'b');
    let done = 0;
    const run = (service: LockService, keys: string[]) =>
      service.withLock(keys, async () => {
        await sleep(1);
        done++;
      });
    const calls = Array.from({ length: 20 }, (_, i) =>
      i % 2 ? run(locks, [a, b]) : run(other, [b, a]),
    );
    await within(20_000, Promise.all(calls), 'multi-key callers');
    expect(done).toBe(20);
  });

  it('rejects bad keys and options before any backend call', async () => {
    const before = backend.calls.length;
    await expect(locks.acquire('')).rejects.toThrow(TypeError);
    await expect(locks.acquire([])).rejects.toThrow(TypeError);
    await expect(locks.acquire(undefined as unknown as string)).rejects.toThrow(TypeError);
    await expect(locks.acquire('k', { ttl: 0 })).rejects.toThrow(/ttl/);
    await expect(locks.acquire('k', { ttl: Number.NaN })).rejects.toThrow(/ttl/);
    await expect(locks.acquire('k', { wait: -1 })).rejects.toThrow(/wait/);
    await expect(locks.acquire('x'.repeat(600))).rejects.toThrow(/limit/);
    await expect(locks.isLocked('')).rejects.toThrow(TypeError);
    expect(backend.calls.length).toBe(before);
  });

  it('makes exactly one acquire and one release call per uncontended cycle', async () => {
    const before = backend.calls.length;
    for (let i = 0; i < 200; i++) {
      const lock = await locks.acquire(uniqueKey('many'));
      await lock.release();
    }
    expect(backend.calls.length - before).toBe(400);
  });
});

afterAll(() => closeTestBackends());
