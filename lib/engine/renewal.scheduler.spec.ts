import { MemoryLockBackend } from '../backends/memory/memory.backend';
import { LockEngine } from './lock.engine';

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
    const engine = new LockEngine(
      backend,
      { keyPrefix: 'b:', ttl: 1500, wait: 0 },
      { warn: () => {}, error: () => {} },
    );
    const locks = [];
    for (let i = 0; i < 2000; i++) {
      locks.push(await engine.acquire(`k${i}`, {}, 'wait'));
      // Spread acquisitions a little so their renewals are not naturally aligned.
      if (i % 400 === 0) await jest.advanceTimersByTimeAsync(20);
    }
    await jest.advanceTimersByTimeAsync(3200); // at least two renewal periods (ttl/3 = 500 ms)
    expect(locks.every((lock) => lock.held)).toBe(true);
    expect(extended).toBeGreaterThanOrEqual(2000);
    expect(extendCalls).toBeLessThan(40);
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
    const engine = new LockEngine(
      backend,
      { keyPrefix: 'v:', ttl: 3000, wait: 0 },
      { warn: () => {}, error: () => {} },
    );
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
