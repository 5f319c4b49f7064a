import type { BackendLockRef } from '../backends/lock-backend.interface';
import { MemoryLockBackend } from '../backends/memory/memory.backend';
import { LockLostError } from '../errors/lock-lost.error';
import { LockNotAcquiredError } from '../errors/lock-not-acquired.error';
import { LOCK_EVENT_TYPES } from '../observability/lock.events';
import type { LockEventMap, LockEventType } from '../observability/lock.events';
import { LockEngine } from './lock.engine';

type Recorded = { [E in LockEventType]: { type: E; event: LockEventMap[E] } }[LockEventType];

function recordAll(engine: LockEngine): Recorded[] {
  const seen: Recorded[] = [];
  for (const type of LOCK_EVENT_TYPES) {
    engine.events.on(type, (event) => seen.push({ type, event } as Recorded));
  }
  return seen;
}

function engineOn(backend = new MemoryLockBackend(), logger = quietLogger()) {
  return new LockEngine(backend, { keyPrefix: '', ttl: 3000, wait: 0 }, logger);
}

function quietLogger() {
  return {
    warnings: [] as string[],
    errors: [] as string[],
    warn(m: string) {
      this.warnings.push(m);
    },
    error(m: string) {
      this.errors.push(m);
    },
  };
}

/** A memory backend whose calls fail while `down` is set, as an unreachable server would. */
class FlakyMemoryBackend extends MemoryLockBackend {
  down = false;
  override extend(requests: Parameters<MemoryLockBackend['extend']>[0]) {
    return this.down ? Promise.reject(new Error('connection refused')) : super.extend(requests);
  }
  override release(ref: BackendLockRef) {
    return this.down ? Promise.reject(new Error('connection refused')) : super.release(ref);
  }
}

describe('lock events', () => {
  afterEach(() => jest.useRealTimers());

  it('reports acquired and released with the name, the keys, the backend and the times', async () => {
    jest.useFakeTimers();
    const engine = engineOn();
    const seen = recordAll(engine);
    const lock = await engine.acquire(['b', 'a'], { name: 'pair' }, 'wait');
    jest.advanceTimersByTime(250);
    await lock.release();
    expect(seen.map((r) => r.type)).toEqual(['acquired', 'released']);
    expect(seen[0].event).toMatchObject({ name: 'pair', keys: ['a', 'b'], backend: 'memory' });
    expect((seen[0].event as LockEventMap['acquired']).waited).toBeGreaterThanOrEqual(0);
    expect((seen[1].event as LockEventMap['released']).held).toBeGreaterThanOrEqual(250);
    await engine.shutdown();
  });

  it('reports busy for tryAcquire and for an acquire whose wait ran out, not for skipped calls', async () => {
    const engine = engineOn();
    const seen = recordAll(engine);
    const holder = await engine.acquire('k', {}, 'wait');
    await expect(engine.acquire('k', { name: 'job' }, 'try')).resolves.toBeNull();
    await expect(engine.acquire('k', { wait: 20 }, 'wait')).rejects.toBeInstanceOf(
      LockNotAcquiredError,
    );
    await expect(engine.acquire('k', {}, 'skip')).rejects.toBeInstanceOf(LockNotAcquiredError);
    const busy = seen.filter((r) => r.type === 'busy');
    expect(busy).toHaveLength(2);
    expect(busy[0].event).toMatchObject({ name: 'job', keys: ['k'] });
    expect((busy[0].event as LockEventMap['busy']).error).toBeInstanceOf(LockNotAcquiredError);
    expect((busy[1].event as LockEventMap['busy']).waited).toBeGreaterThanOrEqual(15);
    await holder.release();
    await engine.shutdown();
  });

  it('reports each background renewal as extended', async () => {
    jest.useFakeTimers();
    const engine = engineOn();
    const seen = recordAll(engine);
    const lock = await engine.acquire('k', { ttl: 300, name: 'renewed' }, 'wait');
    for (let i = 0; i < 20 && !seen.some((r) => r.type === 'extended'); i++) {
      await jest.advanceTimersByTimeAsync(50);
    }
    const extended = seen.find((r) => r.type === 'extended');
    expect(extended?.event).toMatchObject({ name: 'renewed', ttl: 300 });
    expect(lock.held).toBe(true);
    await lock.release();
    await engine.shutdown();
  });

  it('reports a loss with its error, and a failed renewal or release as an error', async () => {
    jest.useFakeTimers();
    const backend = new FlakyMemoryBackend();
    const engine = engineOn(backend);
    const seen = recordAll(engine);
    const lock = await engine.acquire('k', { ttl: 300 }, 'wait');
    backend.down = true;
    for (let i = 0; i < 40 && lock.held; i++) await jest.advanceTimersByTimeAsync(25);
    expect(lock.held).toBe(false);
    const errors = seen.filter((r) => r.type === 'error');
    expect(errors.length).toBeGreaterThan(0);
    expect(errors[0].event).toMatchObject({ operation: 'extend', backend: 'memory' });
    const lost = seen.filter((r) => r.type === 'lost');
    expect(lost).toHaveLength(1);
    expect((lost[0].event as LockEventMap['lost']).error).toBeInstanceOf(LockLostError);
    expect(seen.some((r) => r.type === 'released')).toBe(false);

    const second = await engine.acquire('other', {}, 'wait');
    await expect(second.release()).rejects.toThrow('connection refused');
    expect(seen.filter((r) => r.type === 'error').at(-1)?.event).toMatchObject({
      operation: 'release',
      keys: ['other'],
    });
    backend.down = false;
    // The orphan release of the lost lock is retried in the background, on (fake) timers.
    const stopped = engine.shutdown();
    await jest.advanceTimersByTimeAsync(5000);
    await stopped;
  });

  it('keeps locking when a listener throws, and logs it rate-limited', async () => {
    const logger = quietLogger();
    const engine = engineOn(new MemoryLockBackend(), logger);
    engine.events.on('acquired', () => {
      throw new Error('listener bug');
    });
    const after: string[] = [];
    engine.events.on('acquired', (event) => after.push(event.keys[0]));
    for (let i = 0; i < 5; i++) {
      const lock = await engine.acquire(`k${i}`, {}, 'wait');
      expect(lock.held).toBe(true);
      await lock.release();
    }
    // The second listener still ran every time, after the first threw.
    expect(after).toEqual(['k0', 'k1', 'k2', 'k3', 'k4']);
    expect(logger.errors).toHaveLength(1);
    expect(logger.errors[0]).toContain('listener bug');
    await engine.shutdown();
  });

  it('stops calling a listener once unsubscribed, and keeps nothing per lock while nobody listens', async () => {
    const engine = engineOn();
    const seen: string[] = [];
    const off = engine.events.on('acquired', (event) => seen.push(event.keys[0]));
    await (await engine.acquire('a', {}, 'wait')).release();
    off();
    off();
    expect(engine.events.active).toBe(false);
    const held = await engine.acquire('b', {}, 'wait');
    expect(seen).toEqual(['a']);
    // Nothing observed: the engine's per-lock bookkeeping for events stays empty.
    expect((engine as unknown as { observed: Map<unknown, unknown> }).observed.size).toBe(0);
    await held.release();
    await engine.shutdown();
  });

  it('refuses an unknown event type and a bad name before any backend call', async () => {
    const backend = new MemoryLockBackend();
    const engine = engineOn(backend);
    expect(() => engine.events.on('granted' as LockEventType, () => undefined)).toThrow(TypeError);
    const acquire = jest.spyOn(backend, 'acquire');
    await expect(engine.acquire('k', { name: '' }, 'wait')).rejects.toThrow(TypeError);
    await expect(engine.acquire('k', { name: 'x'.repeat(201) }, 'wait')).rejects.toThrow(TypeError);
    expect(acquire).not.toHaveBeenCalled();
    await engine.shutdown();
  });
});

describe('holdAtLeast and maxHold', () => {
  afterEach(() => jest.useRealTimers());

  it('keeps the lock held after short work until holdAtLeast has passed, then releases it', async () => {
    jest.useFakeTimers();
    const backend = new MemoryLockBackend();
    const engine = engineOn(backend);
    const lock = await engine.acquire('tick', { holdAtLeast: 1000, ttl: 300 }, 'work');
    await engine.runHolding(lock, () => 'done');
    // The work is over; the lock stays, renewed past its 300 ms ttl.
    await jest.advanceTimersByTimeAsync(900);
    expect((await backend.inspect('tick')).held).toBe(true);
    await expect(engine.acquire('tick', {}, 'try')).resolves.toBeNull();
    await jest.advanceTimersByTimeAsync(150);
    expect((await backend.inspect('tick')).held).toBe(false);
    expect(lock.held).toBe(false);
    await engine.shutdown();
  });

  it('releases at once work that outlasted holdAtLeast', async () => {
    jest.useFakeTimers();
    const backend = new MemoryLockBackend();
    const engine = engineOn(backend);
    const lock = await engine.acquire('tick', { holdAtLeast: 100 }, 'work');
    await engine.runHolding(lock, async () => {
      await jest.advanceTimersByTimeAsync(150);
    });
    expect((await backend.inspect('tick')).held).toBe(false);
    await engine.shutdown();
  });

  it('leaves a lingering lock to what holdAtLeast has left at shutdown, without waiting for the grace', async () => {
    jest.useFakeTimers();
    const backend = new MemoryLockBackend();
    const engine = engineOn(backend);
    const lock = await engine.acquire('tick', { holdAtLeast: 60_000 }, 'work');
    await engine.runHolding(lock, () => undefined);
    let stopped = false;
    const shutdown = engine.shutdown(30_000).then(() => (stopped = true));
    await jest.advanceTimersByTimeAsync(10);
    expect(stopped).toBe(true);
    await shutdown;
    // A replica restarting right after its tick does not free the tick for a late replica...
    expect((await backend.inspect('tick')).held).toBe(true);
    // ...and the lock ends on its own when holdAtLeast is over.
    await jest.advanceTimersByTimeAsync(60_000);
    expect((await backend.inspect('tick')).held).toBe(false);
  });

  it('ends a lock at maxHold: its signal aborts with LockLostError and the key is free', async () => {
    jest.useFakeTimers();
    const backend = new MemoryLockBackend();
    const engine = engineOn(backend);
    const lock = await engine.acquire('stuck', { maxHold: 1000, ttl: 300 }, 'wait');
    await jest.advanceTimersByTimeAsync(900);
    expect(lock.held).toBe(true);
    await jest.advanceTimersByTimeAsync(150);
    expect(lock.held).toBe(false);
    expect(lock.signal.reason).toBeInstanceOf(LockLostError);
    expect((lock.signal.reason as Error).message).toContain('maxHold');
    expect((await backend.inspect('stuck')).held).toBe(false);
    await engine.shutdown();
  });

  it('refuses holdAtLeast above maxHold, or above an unrenewed ttl, before any backend call', async () => {
    const backend = new MemoryLockBackend();
    const engine = engineOn(backend);
    const acquire = jest.spyOn(backend, 'acquire');
    await expect(engine.acquire('k', { holdAtLeast: 2000, maxHold: 1000 }, 'work')).rejects.toThrow(
      'holdAtLeast (2000 ms) must be <= maxHold (1000 ms)',
    );
    await expect(
      engine.acquire('k', { holdAtLeast: 2000, ttl: 1000, renew: false }, 'work'),
    ).rejects.toThrow('when renew is false');
    await expect(engine.acquire('k', { holdAtLeast: 10 }, 'wait')).rejects.toThrow(
      'unknown option "holdAtLeast"',
    );
    expect(acquire).not.toHaveBeenCalled();
    await engine.shutdown();
  });
});

describe('events and hold limits at the edges', () => {
  afterEach(() => jest.useRealTimers());

  it('does not make shutdown wait out its grace for a holdAtLeast job that ends during it', async () => {
    jest.useFakeTimers();
    const backend = new MemoryLockBackend();
    const engine = engineOn(backend);
    let finish!: () => void;
    const lock = await engine.acquire('tick', { holdAtLeast: 60_000 }, 'work');
    const work = engine.runHolding(lock, () => new Promise<void>((resolve) => (finish = resolve)));
    let stopped = false;
    const shutdown = engine.shutdown(30_000).then(() => (stopped = true));
    await jest.advanceTimersByTimeAsync(100);
    finish();
    await work;
    await jest.advanceTimersByTimeAsync(100);
    expect(stopped).toBe(true);
    await shutdown;
    // Left to its ttl on the backend (extended to what holdAtLeast had left), not released.
    expect((await backend.inspect('tick')).held).toBe(true);
  });

  it('keeps locking when a listener throws a value that cannot even be printed', async () => {
    const engine = engineOn();
    const unprintable = Object.create(null) as object;
    engine.events.on('acquired', () => {
      throw unprintable;
    });
    engine.events.on('released', () => {
      throw unprintable;
    });
    const lock = await engine.acquire('k', {}, 'wait');
    await expect(lock.release()).resolves.toBeUndefined();
    expect(engine.heldCount).toBe(0);
    await engine.shutdown();
  });

  it('reports a holdAtLeast equal to maxHold as released, not lost', async () => {
    jest.useFakeTimers();
    const engine = engineOn();
    const seen = recordAll(engine);
    const lock = await engine.acquire('tick', { holdAtLeast: 500, maxHold: 500 }, 'work');
    await engine.runHolding(lock, () => undefined);
    await jest.advanceTimersByTimeAsync(600);
    expect(seen.map((r) => r.type)).toEqual(['acquired', 'released']);
    await engine.shutdown();
  });

  it('refuses a holdAtLeast beyond an unrenewed lock’s validity, before any backend call', async () => {
    const engine = engineOn();
    await expect(
      engine.acquire('k', { holdAtLeast: 1000, ttl: 1000, renew: false }, 'work'),
    ).rejects.toThrow('less its safety margin');
    await engine.shutdown();
  });

  it('applies holdAtLeast to the keys a partly reentrant call took itself', async () => {
    jest.useFakeTimers();
    const backend = new MemoryLockBackend();
    const engine = engineOn(backend);
    const outer = await engine.acquire('a', {}, 'work');
    await engine.runHolding(outer, async () => {
      const inner = await engine.acquire(['a', 'b'], { holdAtLeast: 10_000 }, 'work');
      await engine.runHolding(inner, () => undefined);
      expect((await backend.inspect('b')).held).toBe(true);
    });
    await jest.advanceTimersByTimeAsync(5000);
    expect((await backend.inspect('b')).held).toBe(true);
    await jest.advanceTimersByTimeAsync(5100);
    expect((await backend.inspect('b')).held).toBe(false);
    await engine.shutdown();
  });

  it('reports a release in flight when shutdown starts as released, not lost', async () => {
    const backend = new MemoryLockBackend();
    const engine = engineOn(backend);
    const seen = recordAll(engine);
    let answer!: () => void;
    const slow = new Promise<void>((resolve) => (answer = resolve));
    const release = backend.release.bind(backend);
    jest.spyOn(backend, 'release').mockImplementation(async (ref) => {
      await slow;
      return release(ref);
    });
    const lock = await engine.acquire('k', {}, 'wait');
    const released = lock.release();
    const shutdown = engine.shutdown(0);
    answer();
    await released;
    await shutdown;
    expect(seen.map((r) => r.type)).toEqual(['acquired', 'released']);
  });

  it('numbers each grant, the same in its start and its end', async () => {
    const engine = engineOn();
    const seen = recordAll(engine);
    const a = await engine.acquire('a', {}, 'wait');
    const b = await engine.acquire('b', {}, 'wait');
    await b.release();
    await a.release();
    const grant = (i: number) => (seen[i].event as LockEventMap['acquired']).grant;
    expect(seen.map((r) => r.type)).toEqual(['acquired', 'acquired', 'released', 'released']);
    expect(grant(0)).not.toBe(grant(1));
    expect(grant(2)).toBe(grant(1));
    expect(grant(3)).toBe(grant(0));
    await engine.shutdown();
  });

  it('renews in its own async context, not in the context of the caller that acquired', async () => {
    const { AsyncLocalStorage } = await import('node:async_hooks');
    const als = new AsyncLocalStorage<string>();
    const contexts: (string | undefined)[] = [];
    class RecordingBackend extends MemoryLockBackend {
      override extend(requests: Parameters<MemoryLockBackend['extend']>[0]) {
        contexts.push(als.getStore());
        return super.extend(requests);
      }
    }
    jest.useFakeTimers();
    const engine = engineOn(new RecordingBackend());
    const lock = await als.run('request-1', () => engine.acquire('k', { ttl: 300 }, 'wait'));
    for (let i = 0; i < 20 && contexts.length < 2; i++) await jest.advanceTimersByTimeAsync(50);
    expect(contexts.length).toBeGreaterThanOrEqual(2);
    expect(contexts.every((c) => c === undefined)).toBe(true);
    await lock.release();
    await engine.shutdown();
  });
});

describe('async listeners', () => {
  it('logs a rejected async listener instead of leaving an unhandled rejection', async () => {
    const logger = quietLogger();
    const engine = engineOn(new MemoryLockBackend(), logger);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      engine.events.on('acquired', async () => {
        throw new Error('async listener bug');
      });
      const lock = await engine.acquire('k', {}, 'wait');
      await lock.release();
      await new Promise((resolve) => setImmediate(resolve));
      expect(logger.errors.join('\n')).toContain('async listener bug');
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await engine.shutdown();
    }
  });
});
