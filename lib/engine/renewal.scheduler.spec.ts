import { MemoryLockBackend } from '../backends/memory/memory.backend';
import { LockEngine } from './lock.engine';

describe('RenewalScheduler batching', () => {
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
      if (i % 400 === 0) await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 3200)); // at least two renewal periods (ttl/3 = 500 ms)
    expect(locks.every((lock) => lock.held)).toBe(true);
    expect(extended).toBeGreaterThanOrEqual(2000);
    expect(extendCalls).toBeLessThan(40);
    await engine.shutdown();
    expect(engine.heldCount).toBe(0);
    expect(backend.trackedKeys).toBe(0);
  });
});
