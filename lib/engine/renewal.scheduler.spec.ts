import type { BackendExtendRequest, LockBackend } from '../backends/lock-backend.interface';
import { MemoryLockBackend } from '../backends/memory/memory.backend';
import { LockEngine } from './lock.engine';
import type { Lock } from './lock.interface';
import { RENEWAL_BATCH, RENEWAL_WARN_INTERVAL_MS } from './renewal.scheduler';

/** One extend call the backend received: when (fake ms since the test started), and which tokens. */
interface ExtendCall {
  readonly at: number;
  readonly tokens: readonly string[];
}

/** A memory backend that records every extend call (renewals and manual extends alike). */
function recordingBackend(start: number): { backend: MemoryLockBackend; calls: ExtendCall[] } {
  const backend = new MemoryLockBackend();
  const calls: ExtendCall[] = [];
  const extend = backend.extend.bind(backend);
  backend.extend = async (requests: readonly BackendExtendRequest[]) => {
    calls.push({ at: performance.now() - start, tokens: requests.map((r) => r.token) });
    return extend(requests);
  };
  return { backend, calls };
}

const quiet = { warn: () => {}, error: () => {} };

describe('RenewalScheduler batching', () => {
  // Fake timers fake performance.now() too: the engine's clock and its timers move together.
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('renews many held locks with few backend calls, and keeps them held', async () => {
    const backend = new MemoryLockBackend();
    let extendCalls = 0;
    let extended = 0;
    const extend = backend.extend.bind(backend);
    backend.extend = async (requests) => {
      extendCalls++;
      extended += requests.length;
      return extend(requests);
    };
    const engine = new LockEngine(backend, { keyPrefix: 'b:', ttl: 1500, wait: 0 }, quiet);
    const locks = [];
    for (let i = 0; i < 2000; i++) {
      locks.push(await engine.acquire(`k${i}`, {}, 'wait'));
      // Spread acquisitions a little so their renewals are not naturally aligned.
      if (i % 400 === 0) await jest.advanceTimersByTimeAsync(20);
    }
    await jest.advanceTimersByTimeAsync(3200); // at least two renewal periods (ttl/3 = 500 ms)
    expect(locks.every((lock) => lock.held)).toBe(true);
    expect(extended).toBeGreaterThanOrEqual(2000);
    // About one call per RENEWAL_BATCH locks per period (3200 ms: at most 7 renewals of a lock),
    // not one per lock (14,000).
    expect(extendCalls).toBeLessThanOrEqual(7 * Math.ceil(2000 / RENEWAL_BATCH) + 10);
    await engine.shutdown();
    expect(engine.heldCount).toBe(0);
    expect(backend.trackedKeys).toBe(0);
  });
});

describe('RenewalScheduler validity', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('ends a lock at its validity deadline when renewals cannot reach the backend', async () => {
    const backend = new MemoryLockBackend();
    let extendCalls = 0;
    backend.extend = async () => {
      extendCalls++;
      throw new Error('unreachable (injected)');
    };
    const engine = new LockEngine(backend, { keyPrefix: 'v:', ttl: 3000, wait: 0 }, quiet);
    const lock = await engine.acquire('k', {}, 'wait');
    let abortedAt: number | undefined;
    const start = performance.now();
    lock.signal.addEventListener('abort', () => (abortedAt = performance.now() - start));
    await jest.advanceTimersByTimeAsync(2900);
    expect(lock.held).toBe(true);
    expect(extendCalls).toBeGreaterThanOrEqual(2); // retried, well before the deadline
    await jest.advanceTimersByTimeAsync(200);
    expect(lock.held).toBe(false);
    // ttl less the drift margin (1 % + 2 ms), to the fake millisecond.
    expect(abortedAt).toBeGreaterThanOrEqual(3000 - 32);
    expect(abortedAt).toBeLessThanOrEqual(3000 - 32 + 1);
    await engine.shutdown();
  });
});

describe('RenewalScheduler spreading', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('renews a cohort acquired at one instant in ticks of at most RENEWAL_BATCH, each lock on time', async () => {
    const start = performance.now();
    const { backend, calls } = recordingBackend(start);
    const ttl = 3000;
    const engine = new LockEngine(backend, { keyPrefix: 's:', ttl, wait: 0 }, quiet);
    const count = 4 * RENEWAL_BATCH + 100;
    const locks = [];
    // No timer runs between these acquisitions: every lock is due at the same fake instant.
    for (let i = 0; i < count; i++) locks.push(await engine.acquire(`k${i}`, {}, 'wait'));
    await jest.advanceTimersByTimeAsync(3500); // three renewal periods (ttl/3 = 1000 ms)

    expect(locks.every((lock) => lock.held)).toBe(true);
    expect(calls.length).toBeGreaterThanOrEqual(3 * 5);
    expect(Math.max(...calls.map((c) => c.tokens.length))).toBeLessThanOrEqual(RENEWAL_BATCH);
    // The first round: five ticks at distinct instants, the first when the cohort is due.
    const firstRound = calls.filter((c) => c.at < 1500);
    expect(firstRound.map((c) => c.tokens.length)).toEqual([
      RENEWAL_BATCH,
      RENEWAL_BATCH,
      RENEWAL_BATCH,
      RENEWAL_BATCH,
      100,
    ]);
    expect(firstRound[0].at).toBeGreaterThanOrEqual(1000);
    expect(new Set(firstRound.map((c) => c.at)).size).toBe(5);
    // Every lock renewed in every period, each time well before its ttl ran out since the last.
    const renewedAt = new Map<string, number[]>();
    for (const call of calls) {
      for (const token of call.tokens)
        renewedAt.set(token, [...(renewedAt.get(token) ?? []), call.at]);
    }
    expect(renewedAt.size).toBe(count);
    for (const lock of locks) {
      const times = [0, ...(renewedAt.get(lock.token) ?? [])];
      expect(times.length).toBeGreaterThanOrEqual(4);
      for (let i = 1; i < times.length; i++) {
        expect(times[i] - times[i - 1]).toBeGreaterThanOrEqual(ttl / 6);
        expect(times[i] - times[i - 1]).toBeLessThanOrEqual(ttl / 3 + 20);
      }
    }
    await engine.shutdown();
    expect(backend.trackedKeys).toBe(0);
  });

  it("fills a due lock's batch with early renewals and sends the rest when they are due", async () => {
    const start = performance.now();
    const { backend, calls } = recordingBackend(start);
    const engine = new LockEngine(backend, { keyPrefix: 'p:', ttl: 3000, wait: 0 }, quiet);
    const first = await engine.acquire('first', {}, 'wait'); // due at 1000 ms
    await jest.advanceTimersByTimeAsync(400);
    const cohort = [];
    // Renewable from 900 ms, due at 1400 ms: early when the first lock's tick runs at 1000 ms.
    for (let i = 0; i < 2 * RENEWAL_BATCH; i++)
      cohort.push(await engine.acquire(`c${i}`, {}, 'wait'));
    await jest.advanceTimersByTimeAsync(1100);

    const round = calls.filter((c) => c.at < 1500);
    expect(round.map((c) => c.tokens.length)).toEqual([RENEWAL_BATCH, RENEWAL_BATCH, 1]);
    expect(round[0].tokens[0]).toBe(first.token);
    expect(round[0].at).toBeGreaterThanOrEqual(1000);
    expect(round[0].at).toBeLessThanOrEqual(1002);
    // Not renewed early again: the rest waits until the cohort is due, then drains.
    expect(round[1].at).toBeGreaterThanOrEqual(1400);
    expect(round[2].at - round[1].at).toBeGreaterThanOrEqual(1);
    expect(round[2].at - round[1].at).toBeLessThanOrEqual(3);
    expect([first, ...cohort].every((lock) => lock.held)).toBe(true);
    await engine.shutdown();
  });

  it('stops renewing a released lock and keeps the others on schedule', async () => {
    const start = performance.now();
    const { backend, calls } = recordingBackend(start);
    const engine = new LockEngine(backend, { keyPrefix: 'r:', ttl: 3000, wait: 0 }, quiet);
    const locks = [];
    for (let i = 0; i < 50; i++) {
      locks.push(await engine.acquire(`k${i}`, {}, 'wait'));
      await jest.advanceTimersByTimeAsync(7);
    }
    const released = locks.filter((_, i) => i % 2 === 0);
    const kept = locks.filter((_, i) => i % 2 === 1);
    await Promise.all(released.map((lock) => lock.release()));
    await jest.advanceTimersByTimeAsync(2500);
    const renewed = new Set(calls.flatMap((c) => c.tokens));
    expect(released.some((lock) => renewed.has(lock.token))).toBe(false);
    expect(kept.every((lock) => renewed.has(lock.token) && lock.held)).toBe(true);
    await engine.shutdown();
  });

  it('keeps every lock of mixed ttls on schedule while others come and go', async () => {
    const start = performance.now();
    const { backend, calls } = recordingBackend(start);
    const engine = new LockEngine(backend, { keyPrefix: 'm:', ttl: 3000, wait: 0 }, quiet);
    let seed = 42;
    const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const ttls = [300, 1000, 3000, 9000];
    const live: { lock: Lock; ttl: number; at: number }[] = [];
    for (let i = 0; i < 600; i++) {
      const ttl = ttls[Math.floor(random() * ttls.length)];
      const lock = await engine.acquire(`k${i}`, { ttl }, 'wait');
      live.push({ lock, ttl, at: performance.now() - start });
      if (random() < 0.3) {
        const [gone] = live.splice(Math.floor(random() * live.length), 1);
        await gone.lock.release();
      }
      await jest.advanceTimersByTimeAsync(Math.floor(random() * 10));
    }
    const end = performance.now() - start + 10_000;
    await jest.advanceTimersByTimeAsync(10_000);

    expect(live.length).toBeGreaterThan(300);
    const renewedAt = new Map<string, number[]>();
    for (const call of calls) {
      for (const token of call.tokens)
        renewedAt.set(token, [...(renewedAt.get(token) ?? []), call.at]);
    }
    for (const { lock, ttl, at } of live) {
      expect(lock.held).toBe(true);
      const times = [at, ...(renewedAt.get(lock.token) ?? []), end];
      for (let i = 1; i < times.length; i++) {
        expect(times[i] - times[i - 1]).toBeLessThanOrEqual(ttl / 3 + 20);
      }
    }
    await engine.shutdown();
    expect(backend.trackedKeys).toBe(0);
  });

  it('retries, and does not lose, a lock whose entry of a batch answered with an Error', async () => {
    const backend = new MemoryLockBackend();
    const extend = backend.extend.bind(backend);
    let failNext = true;
    // The first renewal of `k0` fails alone (as on one Redis Cluster shard of several).
    (backend as LockBackend).extend = async (requests) => {
      const results = await extend(requests);
      return requests.map((r, i) => {
        if (r.keys[0] !== 'e:k0' || !failNext) return results[i];
        failNext = false;
        return new Error('shard down (injected)');
      });
    };
    const warnings: string[] = [];
    const engine = new LockEngine(
      backend,
      { keyPrefix: 'e:', ttl: 3000, wait: 0 },
      { warn: (m) => warnings.push(m), error: () => {} },
    );
    const locks = [];
    for (let i = 0; i < 3; i++) locks.push(await engine.acquire(`k${i}`, {}, 'wait'));
    await jest.advanceTimersByTimeAsync(1100); // the first renewal: k0's entry fails
    expect(failNext).toBe(false);
    expect(warnings).toEqual([expect.stringContaining('could not renew 1 lock(s)')]);
    await jest.advanceTimersByTimeAsync(3000); // past k0's first validity deadline
    expect(locks.every((lock) => lock.held)).toBe(true);
    await engine.shutdown();
  });

  it("retries a failed renewal when the retry is due, not early in another lock's batch", async () => {
    const start = performance.now();
    const { backend, calls } = recordingBackend(start);
    const extend = backend.extend.bind(backend);
    let failNext = true;
    // The first renewal of `a` fails: its retry is due 300 ms later (ttl/10).
    (backend as LockBackend).extend = async (requests) => {
      const results = await extend(requests);
      return requests.map((r, i) => {
        if (r.keys[0] !== 'q:a' || !failNext) return results[i];
        failNext = false;
        return new Error('shard down (injected)');
      });
    };
    const engine = new LockEngine(backend, { keyPrefix: 'q:', ttl: 3000, wait: 0 }, quiet);
    // a is due at 1000 ms and may join a batch from 500 ms on: b's at 800 ms.
    const a = await engine.acquire('a', {}, 'wait');
    const b = await engine.acquire('b', { ttl: 600 }, 'wait'); // renewed every 200 ms
    await jest.advanceTimersByTimeAsync(1600);

    const sentAt = (lock: Lock): number[] =>
      calls.filter((c) => c.tokens.includes(lock.token)).map((c) => c.at);
    const [failed, retried] = sentAt(a);
    expect(failNext).toBe(false);
    expect(failed).toBeGreaterThanOrEqual(500);
    expect(retried - failed).toBeGreaterThanOrEqual(299);
    // b's batches in between did not take the retry along, early.
    expect(sentAt(b).some((at) => at > failed && at < retried)).toBe(true);
    expect(a.held && b.held).toBe(true);
    await engine.shutdown();
  });

  it('warns once per interval when every batch fails, counting the locks of all of them', async () => {
    const backend = new MemoryLockBackend();
    backend.extend = async () => {
      throw new Error('unreachable (injected)');
    };
    const warnings: string[] = [];
    const engine = new LockEngine(
      backend,
      { keyPrefix: 'w:', ttl: 30_000, wait: 0 },
      { warn: (m) => warnings.push(m), error: () => {} },
    );
    const locks = [];
    for (let i = 0; i < 3 * RENEWAL_BATCH; i++)
      locks.push(await engine.acquire(`k${i}`, {}, 'wait'));
    await jest.advanceTimersByTimeAsync(10_000 + 50); // the first renewal round: three failed batches
    expect(warnings).toEqual([expect.stringContaining(`could not renew ${RENEWAL_BATCH} lock(s)`)]);
    // Retried about every second; the next warning sums every failure since the first.
    await jest.advanceTimersByTimeAsync(RENEWAL_WARN_INTERVAL_MS);
    expect(warnings.length).toBe(2);
    const counted = Number(/could not renew (\d+)/.exec(warnings[1])?.[1]);
    expect(counted).toBeGreaterThanOrEqual(2 * RENEWAL_BATCH);
    expect(locks.every((lock) => lock.held)).toBe(true);
    await engine.shutdown();
  });
});

describe('RenewalScheduler: a lock whose release is in flight', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  /** A memory backend whose releases wait for `finish()`; records the tokens it extends. */
  function slowReleases(): { backend: MemoryLockBackend; extended: string[]; finish(): void } {
    const backend = new MemoryLockBackend();
    const extended: string[] = [];
    const extend = backend.extend.bind(backend);
    backend.extend = async (requests) => {
      extended.push(...requests.map((r) => r.token));
      return extend(requests);
    };
    let finish: () => void = () => undefined;
    const gate = new Promise<void>((r) => (finish = r));
    const release = backend.release.bind(backend);
    backend.release = async (ref) => {
      await gate;
      return release(ref);
    };
    return { backend, extended, finish };
  }

  it('keeps renewing the other locks while one release hangs in its renewal window', async () => {
    const { backend, extended, finish } = slowReleases();
    const engine = new LockEngine(backend, { keyPrefix: '', ttl: 3000, wait: 0 }, quiet);
    const a = await engine.acquire('a', {}, 'wait');
    await jest.advanceTimersByTimeAsync(10);
    const b = await engine.acquire('b', {}, 'wait');
    await jest.advanceTimersByTimeAsync(600); // a may renew early from 500 ms
    const releasing = a.release();
    await jest.advanceTimersByTimeAsync(2_500); // past b's first validity
    expect(extended.filter((t) => t === b.token).length).toBeGreaterThanOrEqual(1);
    expect(b.held).toBe(true);
    finish();
    // a's own ttl ran out while its release hung: that release reports the loss.
    await expect(releasing).rejects.toThrow(/was lost/);
    await b.release();
    await engine.shutdown();
  });

  it('keeps renewing the other locks while a renew: false lock on a lease is released', async () => {
    const { backend, extended, finish } = slowReleases();
    // A session lease kept alive all along: its deadline stays 1 s ahead.
    Object.assign(backend, { leaseDeadline: () => performance.now() + 1000 });
    const engine = new LockEngine(backend, { keyPrefix: '', ttl: 6000, wait: 0 }, quiet);
    const a = await engine.acquire('a', { renew: false }, 'wait');
    await jest.advanceTimersByTimeAsync(10);
    const b = await engine.acquire('b', {}, 'wait');
    await jest.advanceTimersByTimeAsync(900);
    const releasing = a.release();
    await jest.advanceTimersByTimeAsync(3_000); // b was due at about 2010 ms
    expect(extended.filter((t) => t === b.token).length).toBeGreaterThanOrEqual(1);
    finish();
    await releasing;
    await b.release();
    await engine.shutdown();
  });
});
