import type { BackendLockRef } from '../backends/lock-backend.interface';
import { MemoryLockBackend } from '../backends/memory/memory.backend';
import { LockBackendError } from '../errors/lock-backend.error';
import { LockLostError } from '../errors/lock-lost.error';
import { LockEngine } from './lock.engine';

const quiet = { warn: () => undefined, error: () => undefined };

/** Blocks this thread, timers included, as a long GC pause or a CPU-bound handler would. */
function stall(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** A memory backend with a shared lease whose deadline the test sets, as etcd's session has. */
class LeasedMemoryBackend extends MemoryLockBackend {
  lease = Infinity;
  leaseDeadline(): number {
    return this.lease;
  }
}

async function flushIo(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

describe('lock lifecycle: validity is checked when read', () => {
  it('sees a lock lost right after a stall longer than its ttl, before any timer ran', async () => {
    const engine = new LockEngine(
      new MemoryLockBackend(),
      { keyPrefix: '', ttl: 100, wait: 0 },
      quiet,
    );
    const lock = await engine.acquire('k', {}, 'wait');
    const kept = lock.signal;
    expect(lock.held).toBe(true);
    stall(150);
    // Same tick as the end of the stall: no renewal or deadline timer could run.
    expect(kept.aborted).toBe(true);
    expect(lock.held).toBe(false);
    expect(lock.signal.aborted).toBe(true);
    expect(kept.reason).toBeInstanceOf(LockLostError);
    await engine.shutdown();
  });

  it('bounds every lock by the backend lease deadline, read at the moment of the check', async () => {
    const backend = new LeasedMemoryBackend();
    const engine = new LockEngine(backend, { keyPrefix: '', ttl: 60_000, wait: 0 }, quiet);
    const lock = await engine.acquire('k', {}, 'wait');
    const kept = lock.signal;
    backend.lease = performance.now() + 60_000;
    expect(lock.held).toBe(true);
    expect(lock.expiresAt).toBeLessThanOrEqual(Date.now() + 60_000);
    backend.lease = performance.now() - 1; // the lease ran out while nothing ran
    expect(kept.aborted).toBe(true);
    expect(() => kept.throwIfAborted()).toThrow(LockLostError);
    expect(lock.held).toBe(false);
    await expect(lock.release()).rejects.toBeInstanceOf(LockLostError);
    // Lost by the clock alone, so the engine released the grant it may still hold, once.
    await flushIo();
    expect((await backend.inspect('k')).held).toBe(false);
    await engine.shutdown();
  });
});

describe('lock lifecycle: clean-up never delays the caller', () => {
  it('rejects a failed attempt without awaiting cancel, and still cleans up afterwards', async () => {
    const backend = new MemoryLockBackend();
    let failAcquire = true;
    const acquire = backend.acquire.bind(backend);
    backend.acquire = (request) =>
      failAcquire ? Promise.reject(new Error('connection lost (injected)')) : acquire(request);
    const cancels: BackendLockRef[] = [];
    let letCancelFinish: (() => void) | undefined;
    const cancel = backend.cancel.bind(backend);
    backend.cancel = async (ref) => {
      cancels.push(ref);
      // The first clean-up hangs until the test lets it go; it must not hold up the caller.
      if (cancels.length === 1) await new Promise<void>((r) => (letCancelFinish = r));
      return cancel(ref);
    };
    const engine = new LockEngine(backend, { keyPrefix: '', ttl: 5000, wait: 0 }, quiet);
    await expect(engine.acquire('k', { wait: 1000 }, 'wait')).rejects.toBeInstanceOf(
      LockBackendError,
    );
    expect(cancels).toHaveLength(1);
    expect(engine.pendingCleanups).toBe(1);
    letCancelFinish?.();
    await flushIo();
    expect(engine.pendingCleanups).toBe(0);
    failAcquire = false;
    await engine.shutdown();
  });

  it('retries a failed clean-up until it succeeds', async () => {
    const backend = new MemoryLockBackend();
    const acquire = backend.acquire.bind(backend);
    let failures = 1;
    backend.acquire = async (request) => {
      await acquire(request); // granted on the server, but the answer is lost
      throw new Error('timeout (injected)');
    };
    const cancel = backend.cancel.bind(backend);
    backend.cancel = (ref) =>
      failures-- > 0 ? Promise.reject(new Error('still down (injected)')) : cancel(ref);
    const engine = new LockEngine(backend, { keyPrefix: '', ttl: 60_000, wait: 0 }, quiet);
    await expect(engine.acquire('k', {}, 'try')).rejects.toBeInstanceOf(LockBackendError);
    expect((await backend.inspect('k')).held).toBe(true);
    // The retry comes after a short backoff (250 ms); bounded wait for it.
    for (let i = 0; i < 100 && (await backend.inspect('k')).held; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect((await backend.inspect('k')).held).toBe(false);
    expect(engine.pendingCleanups).toBe(0);
    await engine.shutdown();
  });
});

describe('lock lifecycle: shutdown', () => {
  it('releases each held grant exactly once, multi-key included, and settles before resolving', async () => {
    const backend = new MemoryLockBackend();
    const releases: { keys: readonly string[]; settled: boolean }[] = [];
    const release = backend.release.bind(backend);
    backend.release = async (ref) => {
      const entry = { keys: ref.keys, settled: false };
      releases.push(entry);
      await new Promise((r) => setTimeout(r, 20)); // a release on the wire takes a while
      const ok = await release(ref);
      entry.settled = true;
      return ok;
    };
    const engine = new LockEngine(backend, { keyPrefix: '', ttl: 60_000, wait: 0 }, quiet);
    const single = await engine.acquire('a', {}, 'wait');
    const multi = await engine.acquire(['b', 'c'], {}, 'wait');
    await engine.shutdown();
    expect(releases.map((r) => r.keys)).toEqual([['a'], ['b', 'c']]);
    expect(releases.every((r) => r.settled)).toBe(true);
    expect(single.signal.reason).toBeInstanceOf(LockLostError);
    expect(multi.held).toBe(false);
    expect(backend.trackedKeys).toBe(0);
    expect(engine.pendingCleanups).toBe(0);
  });

  it('does not release again a lock whose own release is on the wire', async () => {
    const backend = new MemoryLockBackend();
    let releases = 0;
    const release = backend.release.bind(backend);
    backend.release = async (ref) => {
      releases++;
      await new Promise((r) => setTimeout(r, 20));
      return release(ref);
    };
    const engine = new LockEngine(backend, { keyPrefix: '', ttl: 60_000, wait: 0 }, quiet);
    const lock = await engine.acquire('a', {}, 'wait');
    const releasing = lock.release();
    await engine.shutdown();
    await releasing;
    expect(releases).toBe(1);
    expect(backend.trackedKeys).toBe(0);
  });
});

describe('lock lifecycle: re-check hints and shutdown races', () => {
  afterEach(() => jest.useRealTimers());

  it('re-checks once at a hint, without a wasted attempt after it', async () => {
    jest.useFakeTimers();
    const backend = new MemoryLockBackend();
    const engine = new LockEngine(backend, { keyPrefix: '', ttl: 60_000, wait: 5000 }, quiet);
    const holder = await engine.acquire('k', {}, 'wait');
    const sentAt: number[] = [];
    const acquire = backend.acquire.bind(backend);
    const start = performance.now();
    backend.acquire = (request) => {
      sentAt.push(Math.round(performance.now() - start));
      return acquire(request);
    };
    const onWake = backend.onWake.bind(backend);
    let hint: ((ms: number) => void) | undefined;
    backend.onWake = (token, listener) => {
      hint = (ms) => listener(undefined, ms);
      return onWake(token, listener);
    };
    const waiting = engine.acquire('k', { wait: 5000 }, 'wait').catch((e: unknown) => e);
    await jest.advanceTimersByTimeAsync(10);
    hint?.(100); // "the lock ahead of you is reserved for 100 ms"
    await jest.advanceTimersByTimeAsync(300);
    // The first attempt, one at the hint, and nothing else (the holder's ttl is 60 s).
    expect(sentAt).toEqual([0, 110]);
    await holder.release();
    await jest.advanceTimersByTimeAsync(10);
    expect(await waiting).toHaveProperty('held', true);
    await engine.shutdown();
  });

  it('waits at shutdown for an acquire in flight, and cleans up the grant it brought', async () => {
    const backend = new MemoryLockBackend();
    const events: string[] = [];
    let answer: (() => void) | undefined;
    const acquire = backend.acquire.bind(backend);
    backend.acquire = async (request) => {
      const result = await acquire(request);
      await new Promise<void>((r) => (answer = r)); // the answer is still on the wire
      events.push(`acquire answered: ${String(result.acquired)}`);
      return result;
    };
    const cancel = backend.cancel.bind(backend);
    backend.cancel = async (ref) => {
      events.push('cancel');
      return cancel(ref);
    };
    const engine = new LockEngine(backend, { keyPrefix: '', ttl: 60_000, wait: 0 }, quiet);
    const acquiring = engine.acquire('k', {}, 'wait').catch((e: unknown) => e);
    await flushIo();
    const shutdown = engine.shutdown().then(() => events.push('shutdown resolved'));
    await flushIo();
    answer?.();
    await shutdown;
    expect(events).toEqual(['acquire answered: true', 'cancel', 'shutdown resolved']);
    expect(await acquiring).toBeInstanceOf(Error);
    expect(backend.trackedKeys).toBe(0);
  });
});
