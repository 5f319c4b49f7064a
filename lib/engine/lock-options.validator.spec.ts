import type { LockBackend } from '../backends/lock-backend.interface';
import { MemoryLockBackend } from '../backends/memory/memory.backend';
import { LockEngine } from './lock.engine';
import { MAX_DURATION } from './lock-options.validator';
import { normalizeKeys } from './lock-key.validator';

const quiet = { warn: () => undefined, error: () => undefined };

/** A memory backend that counts every call, to prove a rejection came before any of them. */
function counted(backend: MemoryLockBackend, extra: Partial<LockBackend> = {}) {
  const counter = { calls: 0 };
  for (const method of ['acquire', 'extend', 'release', 'cancel', 'inspect'] as const) {
    const original = backend[method].bind(backend) as (...args: unknown[]) => unknown;
    (backend as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
      counter.calls++;
      return original(...args);
    };
  }
  Object.assign(backend, extra);
  return counter;
}

describe('times: one valid range everywhere', () => {
  const engine = new LockEngine(
    new MemoryLockBackend(),
    { keyPrefix: '', ttl: 1000, wait: 0 },
    quiet,
  );
  afterAll(() => engine.shutdown());

  it.each([2 ** 31, 1e21, Number.MAX_VALUE, Infinity, NaN, 0, -1, '10'])(
    'rejects ttl %p with a TypeError before any backend call',
    async (ttl) => {
      const backend = new MemoryLockBackend();
      const counter = counted(backend);
      const local = new LockEngine(backend, { keyPrefix: '', ttl: 1000, wait: 0 }, quiet);
      await expect(local.acquire('k', { ttl: ttl as number }, 'wait')).rejects.toThrow(TypeError);
      expect(counter.calls).toBe(0);
      await local.shutdown();
    },
  );

  it.each([2 ** 31, 1e21, -1, NaN])('rejects wait %p with a TypeError', async (wait) => {
    await expect(engine.acquire('k', { wait }, 'wait')).rejects.toThrow(
      /wait must be a number of milliseconds >= 0 and <= 2147483647/,
    );
  });

  it('accepts the largest ttl on the memory backend and keeps a single holder', async () => {
    const lock = await engine.acquire('max', { ttl: MAX_DURATION }, 'wait');
    await new Promise((r) => setTimeout(r, 20));
    expect(lock.held).toBe(true);
    expect(await engine.acquire('max', {}, 'try')).toBeNull();
    await lock.release();
  });

  it('rounds a fractional ttl up to whole ms', async () => {
    const backend = new MemoryLockBackend();
    const ttls: number[] = [];
    const acquire = backend.acquire.bind(backend);
    backend.acquire = (request) => {
      ttls.push(request.ttl);
      return acquire(request);
    };
    const local = new LockEngine(backend, { keyPrefix: '', ttl: 1000, wait: 0 }, quiet);
    const lock = await local.acquire('f', { ttl: 1100.0000000000002 }, 'wait');
    expect(ttls).toEqual([1101]);
    await lock.release();
    await local.shutdown();
  });

  it('checks extend(ttl) before any backend call', async () => {
    const backend = new MemoryLockBackend();
    const local = new LockEngine(backend, { keyPrefix: '', ttl: 1000, wait: 0 }, quiet);
    const lock = await local.acquire('e', {}, 'wait');
    const counter = counted(backend);
    await expect(lock.extend(2 ** 31)).rejects.toThrow(TypeError);
    await expect(lock.extend(-5)).rejects.toThrow(TypeError);
    expect(counter.calls).toBe(0);
    expect(lock.held).toBe(true);
    await lock.release();
    await local.shutdown();
  });

  it('checks backend options', () => {
    expect(() => new MemoryLockBackend({ claimWindow: 2 ** 31 })).toThrow(TypeError);
  });
});

describe('options: checked by type and by name', () => {
  const engine = new LockEngine(
    new MemoryLockBackend(),
    { keyPrefix: '', ttl: 1000, wait: 0 },
    quiet,
  );
  afterAll(() => engine.shutdown());

  it('rejects a non-boolean renew', async () => {
    await expect(
      engine.acquire('k', { renew: 'no' as unknown as boolean }, 'wait'),
    ).rejects.toThrow(/renew must be true or false, got "no"/);
  });

  it('rejects an unknown option with a suggestion', async () => {
    await expect(engine.acquire('k', { tll: 5000 } as never, 'wait')).rejects.toThrow(
      /unknown option "tll"; did you mean "ttl"\?/,
    );
    await expect(engine.acquire('k', { colour: 1 } as never, 'wait')).rejects.toThrow(
      /unknown option "colour" \(known: ttl, wait, signal, renew, name, maxHold\)/,
    );
  });

  it("rejects more keys than the backend's limit before any call, naming the limit", async () => {
    const backend = new MemoryLockBackend();
    const counter = counted(backend, { maxKeys: 32 } as Partial<LockBackend>);
    const local = new LockEngine(backend, { keyPrefix: '', ttl: 1000, wait: 0 }, quiet);
    const keys = Array.from({ length: 33 }, (_, i) => `k${i}`);
    await expect(local.acquire(keys, {}, 'wait')).rejects.toThrow(/at most 32 keys, got 33/);
    expect(counter.calls).toBe(0);
    const lock = await local.acquire(keys.slice(0, 32), {}, 'wait');
    await lock.release();
    await local.shutdown();
  });
});

describe("keys: the backend's own check (assertKeys)", () => {
  it('gets the prefixed keys before any call, and its TypeError reaches the caller as is', async () => {
    const backend = new MemoryLockBackend();
    const seen: (readonly string[])[] = [];
    const counter = counted(backend, {
      assertKeys: (keys: readonly string[]) => {
        seen.push(keys);
        if (keys.length > 1) throw new TypeError('these keys cannot lock together');
      },
    });
    const local = new LockEngine(backend, { keyPrefix: 'p:', ttl: 1000, wait: 0 }, quiet);
    await expect(local.acquire(['b', 'a'], {}, 'wait')).rejects.toThrow(
      new TypeError('these keys cannot lock together'),
    );
    expect(counter.calls).toBe(0);
    const lock = await local.acquire('a', {}, 'wait');
    expect(seen).toEqual([['p:a', 'p:b'], ['p:a']]);
    await lock.release();
    await local.shutdown();
  });
});

describe('keys: sparse arrays', () => {
  it('refuses a hole in a key array instead of skipping it', () => {
    // eslint-disable-next-line no-sparse-arrays
    expect(() => normalizeKeys(['a', , 'b'])).toThrow(/lock key #1 must be a string/);
  });
});

describe('keys: lone surrogates', () => {
  const engine = new LockEngine(
    new MemoryLockBackend(),
    { keyPrefix: '', ttl: 1000, wait: 0 },
    quiet,
  );
  afterAll(() => engine.shutdown());

  it.each(['user:\ud83d', 'user:\udca9', 'x\udca9\ud83d'])('rejects %j', async (key) => {
    await expect(engine.acquire(key, {}, 'try')).rejects.toThrow(/lone UTF-16 surrogate/);
    await expect(engine.isLocked(key)).rejects.toThrow(/lone UTF-16 surrogate/);
  });

  it('accepts a well-formed pair and U+FFFD itself', async () => {
    const pair = await engine.acquire('user:\ud83d\udca9', {}, 'try');
    const replacement = await engine.acquire('user:\ufffd', {}, 'try');
    expect(pair).not.toBeNull();
    expect(replacement).not.toBeNull();
    await pair?.release();
    await replacement?.release();
  });
});
