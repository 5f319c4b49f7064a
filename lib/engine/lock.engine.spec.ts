import type { BackendAcquireRequest, BackendHandoff } from '../backends/lock-backend.interface';
import { MemoryLockBackend } from '../backends/memory/memory.backend';
import { LockEngine } from './lock.engine';

const quiet = { warn: () => undefined, error: () => undefined };

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
    expect(claims).toBe(1); // the claim to the full ttl went out in the background
    expect((await backend.inspect('k')).ttl).toBeGreaterThan(5000);
    await lock.release();
    expect(backend.trackedKeys).toBe(0);
    await engine.shutdown();
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
