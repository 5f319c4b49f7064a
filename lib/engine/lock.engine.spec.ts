import type { BackendAcquireRequest, BackendHandoff } from '../backends/lock-backend.interface';
import { MemoryLockBackend } from '../backends/memory/memory.backend';
import { LockEngine } from './lock.engine';
import { LockNotAcquiredError } from '../errors/lock-not-acquired.error';
import type { Lock } from './lock.interface';

const quiet = { warn: () => undefined, error: () => undefined };

/**
 * Under jest's fake timers: `engine` grants 'k', a second acquire (with `renew`) queues behind
 * it, and the holder's release hands the lock over to it.
 */
async function handedOver(engine: LockEngine, renew: boolean): Promise<Lock> {
  const holder = await engine.acquire('k', {}, 'wait');
  const waiting = engine.acquire('k', { renew }, 'wait');
  await jest.advanceTimersByTimeAsync(1);
  await holder.release();
  await jest.advanceTimersByTimeAsync(1);
  return waiting;
}

describe('LockEngine handoff', () => {
  it('takes a handed-over lock from the wake-up, without another acquire round trip', async () => {
    const backend = new MemoryLockBackend();
    const attempts: BackendAcquireRequest[] = [];
    const acquire = backend.acquire.bind(backend);
    backend.acquire = (request) => {
      attempts.push(request);
      return acquire(request);
    };
    let claims = 0;
    const extend = backend.extend.bind(backend);
    backend.extend = (requests) => {
      claims++;
      return extend(requests);
    };
    const engine = new LockEngine(backend, { keyPrefix: '', ttl: 10_000, wait: 5000 }, quiet);
    const holder = await engine.acquire('k', {}, 'wait');
    const waiting = engine.acquire('k', {}, 'wait');
    await new Promise((r) => setImmediate(r));
    await holder.release();
    const lock = await waiting;
    expect(lock.fencingToken).toBeGreaterThan(holder.fencingToken);
    // One grant for the holder, one busy attempt for the waiter, and no claim attempt.
    expect(attempts.map((a) => a.attempt)).toEqual([1, 1]);
    await new Promise((r) => setImmediate(r));
    // Held on the reservation (claimWindow, 2000 ms) until its first renewal: no claim call yet.
    expect(claims).toBe(0);
    expect((await backend.inspect('k')).ttl).toBeLessThanOrEqual(2000);
    await lock.release();
    expect(backend.trackedKeys).toBe(0);
    await engine.shutdown();
  });

  it.each([
    [
      'a renewed lock claims its full ttl with its first renewal, at a third of the reservation',
      true,
    ],
    ['a lock without renewal claims its full ttl at once', false],
  ])('%s', async (_, renew) => {
    jest.useFakeTimers();
    try {
      const backend = new MemoryLockBackend({ claimWindow: 300 });
      const claims: number[] = [];
      const extend = backend.extend.bind(backend);
      backend.extend = (requests) => {
        claims.push(...requests.map((r) => r.ttl));
        return extend(requests);
      };
      const engine = new LockEngine(backend, { keyPrefix: '', ttl: 10_000, wait: 5000 }, quiet);
      const lock = await handedOver(engine, renew);
      await jest.advanceTimersByTimeAsync(1); // the scheduler's next tick
      expect(claims).toEqual(renew ? [] : [10_000]);
      await jest.advanceTimersByTimeAsync(100); // a third of the reservation
      expect(claims).toEqual([10_000]);
      expect((await backend.inspect('k')).ttl).toBeGreaterThan(9000);
      await jest.advanceTimersByTimeAsync(600); // twice the reservation
      expect(lock.held).toBe(true);
      await lock.release();
      await engine.shutdown();
    } finally {
      jest.useRealTimers();
    }
  });

  it('ignores a wake-up that reports an older attempt and claims with a new attempt instead', async () => {
    const backend = new MemoryLockBackend();
    const onWake = backend.onWake.bind(backend);
    // Deliver every offer as if it served attempt 0: stale for the engine.
    backend.onWake = (token, listener) =>
      onWake(token, (offer?: BackendHandoff) => listener(offer && { ...offer, attempt: 0 }));
    const attempts: number[] = [];
    const acquire = backend.acquire.bind(backend);
    backend.acquire = (request) => {
      attempts.push(request.attempt ?? -1);
      return acquire(request);
    };
    const engine = new LockEngine(backend, { keyPrefix: '', ttl: 10_000, wait: 5000 }, quiet);
    const holder = await engine.acquire('k', {}, 'wait');
    const waiting = engine.acquire('k', {}, 'wait');
    await new Promise((r) => setImmediate(r));
    await holder.release();
    const lock = await waiting;
    expect(attempts).toEqual([1, 1, 2]);
    await lock.release();
    await engine.shutdown();
  });
});

describe('LockEngine: a grant whose answer came back late', () => {
  afterEach(() => jest.useRealTimers());

  /** A memory backend whose next `slow` acquire answers arrive `delay` ms late. */
  function lateBackend(delay: number, slow: number): MemoryLockBackend & { attempts: number } {
    const backend = Object.assign(new MemoryLockBackend(), { attempts: 0 });
    const acquire = backend.acquire.bind(backend);
    let left = slow;
    backend.acquire = async (request) => {
      backend.attempts++;
      const result = await acquire(request);
      if (left-- > 0) await new Promise((r) => setTimeout(r, delay));
      return result;
    };
    return backend;
  }

  it('is not handed out with less than half its ttl left: a try gives it back and answers busy', async () => {
    jest.useFakeTimers();
    const backend = lateBackend(300, 1);
    const engine = new LockEngine(backend, { keyPrefix: '', ttl: 400, wait: 0 }, quiet);
    const trying = engine.acquire('k', {}, 'try');
    await jest.advanceTimersByTimeAsync(350);
    // Without the check: a lock whose validity ended 100 ms before the caller got it.
    await expect(trying).resolves.toBeNull();
    await jest.advanceTimersByTimeAsync(10);
    expect((await backend.inspect('k')).held).toBe(false);
    await engine.shutdown();
  });

  it('is taken again, with a fresh ttl, while the wait lasts', async () => {
    jest.useFakeTimers();
    const backend = lateBackend(300, 1);
    const engine = new LockEngine(backend, { keyPrefix: '', ttl: 400, wait: 5_000 }, quiet);
    const acquiring = engine.acquire('k', {}, 'wait');
    await jest.advanceTimersByTimeAsync(350);
    const lock = await acquiring;
    // The late answer was declined, and the grant taken again by a second attempt.
    expect(backend.attempts).toBe(2);
    expect(lock.held).toBe(true);
    expect(lock.signal.aborted).toBe(false);
    expect(lock.expiresAt - Date.now()).toBeGreaterThan(200);
    await lock.release();
    await engine.shutdown();
  });
});

describe('LockEngine: late grants, the bounds of declining them', () => {
  afterEach(() => jest.useRealTimers());

  /** A memory backend whose acquire answers arrive `delay` ms late, every time. */
  function alwaysLate(delay: number): MemoryLockBackend & { attempts: number } {
    const backend = Object.assign(new MemoryLockBackend(), { attempts: 0 });
    const acquire = backend.acquire.bind(backend);
    backend.acquire = async (request) => {
      backend.attempts++;
      const result = await acquire(request);
      await new Promise((r) => setTimeout(r, delay));
      return result;
    };
    return backend;
  }

  it('grants a tiny ttl from a backend that answers at once, on the first attempt', async () => {
    // Fake timers: the clock moves only when told, so "at once" is exact.
    jest.useFakeTimers();
    const backend = Object.assign(new MemoryLockBackend(), { attempts: 0 });
    const acquire = backend.acquire.bind(backend);
    backend.acquire = (request) => {
      backend.attempts++;
      return acquire(request);
    };
    const engine = new LockEngine(backend, { keyPrefix: '', ttl: 2, wait: 200 }, quiet);
    const lock = await engine.acquire('tiny', { renew: false }, 'wait');
    expect(backend.attempts).toBe(1);
    await lock.release().catch(() => undefined);
    await engine.shutdown();
  });

  it('declines once: a second late answer is handed out while still valid', async () => {
    jest.useFakeTimers();
    const backend = alwaysLate(250); // more than half of 400, less than all of it
    const engine = new LockEngine(backend, { keyPrefix: '', ttl: 400, wait: 5_000 }, quiet);
    const acquiring = engine.acquire('k', { renew: false }, 'wait');
    await jest.advanceTimersByTimeAsync(600);
    const lock = await acquiring;
    expect(backend.attempts).toBe(2);
    expect(lock.held).toBe(true);
    await lock.release();
    await engine.shutdown();
  });

  it('gives the key back after two answers that came too late to be valid, instead of holding it for the whole wait', async () => {
    jest.useFakeTimers();
    const backend = alwaysLate(450); // longer than the ttl
    const engine = new LockEngine(backend, { keyPrefix: '', ttl: 400, wait: 60_000 }, quiet);
    const acquiring = engine.acquire('k', {}, 'wait');
    const settled = expect(acquiring).rejects.toThrow(LockNotAcquiredError);
    await jest.advanceTimersByTimeAsync(1_000);
    await settled;
    expect(backend.attempts).toBe(2);
    await jest.advanceTimersByTimeAsync(10);
    expect((await backend.inspect('k')).held).toBe(false);
    await engine.shutdown();
  });
});

describe('LockEngine extensions', () => {
  // Fake timers move performance.now() with setTimeout: the engine's deadlines follow exactly.
  afterEach(() => jest.useRealTimers());

  it('runs one extension at a time per lock, so the local deadline never outlives the server', async () => {
    jest.useFakeTimers();
    const backend = new MemoryLockBackend();
    const extend = backend.extend.bind(backend);
    const sent: number[] = [];
    // Slow extensions: a renewal falls due while a manual extend is still in flight.
    backend.extend = async (requests) => {
      sent.push(requests[0].ttl);
      await new Promise((r) => setTimeout(r, 150));
      return extend(requests);
    };
    const engine = new LockEngine(backend, { keyPrefix: '', ttl: 600, wait: 0 }, quiet);
    const lock = await engine.acquire('k', {}, 'wait');
    await jest.advanceTimersByTimeAsync(120); // the renewal is due at 200 ms
    const extending = lock.extend(60_000);
    await jest.advanceTimersByTimeAsync(160);
    await extending;
    await jest.advanceTimersByTimeAsync(300); // let anything queued behind it settle
    // Without serialization a renewal with the old ttl (600) is applied after the manual
    // extend, while the engine believes 60 s.
    expect(sent[0]).toBe(60_000);
    expect(sent.filter((ttl) => ttl === 600)).toEqual([]);
    const serverTtl = (await backend.inspect('k')).ttl ?? 0;
    expect(serverTtl).toBeGreaterThan(50_000);
    expect(lock.expiresAt - Date.now()).toBeLessThanOrEqual(serverTtl);
    await lock.release();
    await engine.shutdown();
  });

  it.each([
    ['renewed', true],
    ['without renewal', false],
  ])(
    'retries the claim of a handed-over lock when the first claim fails (%s)',
    async (_, renew) => {
      jest.useFakeTimers();
      const backend = new MemoryLockBackend({ claimWindow: 300 });
      const extend = backend.extend.bind(backend);
      let failures = 1;
      backend.extend = async (requests) => {
        if (failures-- > 0) throw new Error('blip (injected)');
        return extend(requests);
      };
      try {
        const engine = new LockEngine(backend, { keyPrefix: '', ttl: 10_000, wait: 5000 }, quiet);
        const lock = await handedOver(engine, renew);
        await jest.advanceTimersByTimeAsync(600); // twice the reservation
        expect(lock.held).toBe(true);
        expect((await backend.inspect('k')).ttl).toBeGreaterThan(5000);
        await lock.release();
        await engine.shutdown();
      } finally {
        jest.useRealTimers();
      }
    },
  );

  it('lets many waiters park without listener warnings', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(w.name);
    process.on('warning', onWarning);
    const backend = new MemoryLockBackend();
    const engine = new LockEngine(backend, { keyPrefix: '', ttl: 10_000, wait: 5000 }, quiet);
    try {
      const holder = await engine.acquire('k', {}, 'wait');
      const waiters = Array.from({ length: 20 }, () =>
        engine.acquire('k', {}, 'wait').then((lock) => lock.release()),
      );
      await new Promise((r) => setTimeout(r, 20));
      await holder.release();
      await Promise.all(waiters);
      await new Promise((r) => setImmediate(r));
      expect(warnings).not.toContain('MaxListenersExceededWarning');
    } finally {
      process.off('warning', onWarning);
      await engine.shutdown();
    }
  });
});
