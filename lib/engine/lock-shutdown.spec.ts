import { MemoryLockBackend } from '../backends/memory/memory.backend';
import { LockLostError } from '../errors/lock-lost.error';
import { LockShutdownError } from '../errors/lock-shutdown.error';
import { LockEngine } from './lock.engine';

const quiet = { warn: () => undefined, error: () => undefined };

/** Whether `promise` has settled, without waiting for it. */
function settledFlag(promise: Promise<unknown>): () => boolean {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  return () => settled;
}

describe('graceful shutdown (fake timers)', () => {
  let backend: MemoryLockBackend;
  let engine: LockEngine;
  let other: LockEngine; // another instance on the same store

  beforeEach(() => {
    jest.useFakeTimers();
    backend = new MemoryLockBackend();
    engine = new LockEngine(backend, { keyPrefix: '', ttl: 1_000, wait: 60_000 }, quiet);
    other = new LockEngine(backend, { keyPrefix: '', ttl: 1_000, wait: 0 }, quiet);
  });

  afterEach(async () => {
    jest.useRealTimers();
    await other.shutdown();
    await engine.shutdown();
  });

  it('refuses new locks at once, keeps held ones renewed past their ttl, and ends when they are released', async () => {
    const held = await engine.acquire('busy', {}, 'wait');
    const blocked = await other.acquire('queued', {}, 'wait');
    const waiter = engine.acquire('queued', {}, 'wait');
    const waiterDone = waiter.catch((err: unknown) => err);

    const shutdown = engine.shutdown(10_000);
    const done = settledFlag(shutdown);
    // A waiter parked before the shutdown gives up; a new acquisition is refused before any call.
    expect(await waiterDone).toBeInstanceOf(LockShutdownError);
    await expect(engine.acquire('fresh', {}, 'wait')).rejects.toBeInstanceOf(LockShutdownError);

    // Five ttls later the held lock is still ours: renewals went on during the grace.
    await jest.advanceTimersByTimeAsync(5_000);
    expect(held.held).toBe(true);
    expect(done()).toBe(false);
    expect(await other.acquire('busy', { wait: 0 }, 'try')).toBeNull();

    await held.release();
    await jest.advanceTimersByTimeAsync(0);
    // Released by its work: shutdown ends there, long before the grace, and the work saw no loss.
    expect(done()).toBe(true);
    expect(held.signal.reason).not.toBeInstanceOf(LockLostError);
    await blocked.release();
  });

  it('lets work in its grace re-enter a lock it holds, but not take a new key', async () => {
    const held = await engine.acquire('outer', {}, 'wait');
    const run = engine.runHolding(held, async () => {
      void engine.shutdown(10_000);
      const inner = await engine.acquire('outer', {}, 'wait');
      await inner.release();
      await expect(engine.acquire(['outer', 'extra'], {}, 'wait')).rejects.toBeInstanceOf(
        LockShutdownError,
      );
      return 'done';
    });
    await expect(run).resolves.toBe('done');
  });

  it('releases what is still held when the grace runs out, and the work sees it lost', async () => {
    const held = await engine.acquire('slow', {}, 'wait');
    const shutdown = engine.shutdown(3_000);
    const done = settledFlag(shutdown);
    await jest.advanceTimersByTimeAsync(2_900);
    expect([held.held, done()]).toEqual([true, false]);
    await jest.advanceTimersByTimeAsync(200);
    expect(done()).toBe(true);
    expect(held.held).toBe(false);
    expect(held.signal.reason).toBeInstanceOf(LockLostError);
    expect((held.signal.reason as LockLostError).message).toMatch(/3000 ms grace period ran out/);
    // Released on the backend, not left to expire.
    expect(await other.acquire('slow', { wait: 0 }, 'try')).not.toBeNull();
  });

  it('with no grace, releases at once', async () => {
    const held = await engine.acquire('now', {}, 'wait');
    await engine.shutdown(0);
    expect(held.held).toBe(false);
    expect(held.signal.reason).toBeInstanceOf(LockLostError);
  });
});
