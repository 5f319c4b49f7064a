import { LockBackendError } from '../../errors/lock-backend.error';
import { MemoryLockBackend } from './memory.backend';

const ref = (key: string, token: string) => ({ keys: [key], token });

describe('MemoryLockBackend', () => {
  let backend: MemoryLockBackend;
  beforeEach(() => (backend = new MemoryLockBackend({ claimWindow: 100 })));
  afterEach(() => backend.close());

  it('keeps state only for keys that are held or awaited', async () => {
    for (let i = 0; i < 1000; i++) {
      const r = ref(`k${i}`, `t${i}`);
      expect((await backend.acquire({ ...r, ttl: 1000 })).acquired).toBe(true);
      expect(await backend.release(r)).toBe(true);
    }
    expect(backend.trackedKeys).toBe(0);
    await backend.acquire({ ...ref('busy', 'a'), ttl: 1000 });
    await backend.acquire({ ...ref('busy', 'b'), ttl: 1000, queueFor: 1000 });
    expect(backend.trackedKeys).toBe(1);
    await backend.cancel(ref('busy', 'b'));
    await backend.release(ref('busy', 'a'));
    expect(backend.trackedKeys).toBe(0);
  });

  it('answers ping while open and rejects it once closed; names no server', async () => {
    expect(backend.endpoint).toBe('in-process');
    await expect(backend.ping()).resolves.toBeUndefined();
    await backend.close();
    await expect(backend.ping()).rejects.toThrow(LockBackendError);
    await expect(backend.ping()).rejects.toThrow(/closed/);
  });

  it('rejects an unknown option, suggesting the known one', () => {
    expect(() => new MemoryLockBackend({ claimWindw: 10 } as never)).toThrow(
      /unknown option "claimWindw"; did you mean "claimWindow"/,
    );
  });

  describe('expiry without a timer per lock (fake timers)', () => {
    beforeEach(() => jest.useFakeTimers());
    afterEach(() => jest.useRealTimers());

    it('holds many keys with one timer in all (the sweep), not one per key', async () => {
      const before = jest.getTimerCount();
      for (let i = 0; i < 500; i++) {
        expect((await backend.acquire({ ...ref(`h${i}`, `t${i}`), ttl: 10_000 })).acquired).toBe(
          true,
        );
      }
      expect(jest.getTimerCount() - before).toBe(1);
      for (let i = 0; i < 500; i++) expect(await backend.release(ref(`h${i}`, `t${i}`))).toBe(true);
    });

    it('an expired key reads free at once, is granted again with a greater token, and its state is swept', async () => {
      const first = await backend.acquire({ ...ref('e', 'a'), ttl: 300 });
      if (!first.acquired) throw new Error('not granted');
      await jest.advanceTimersByTimeAsync(301);
      expect((await backend.inspect('e')).held).toBe(false);
      expect(await backend.extend([{ ...ref('e', 'a'), ttl: 300 }])).toEqual([false]);
      const second = await backend.acquire({ ...ref('e', 'b'), ttl: 300 });
      if (!second.acquired) throw new Error('not granted');
      expect(second.fencingTokens[0]).toBeGreaterThan(first.fencingTokens[0]);
      expect(await backend.release(ref('e', 'a'))).toBe(false);
      expect((await backend.inspect('e')).held).toBe(true);
      await jest.advanceTimersByTimeAsync(301);
      expect(backend.trackedKeys).toBe(1); // expired, not swept yet
      await jest.advanceTimersByTimeAsync(1_000);
      expect(backend.trackedKeys).toBe(0);
      expect(jest.getTimerCount()).toBe(0); // the sweep stops with nothing left to sweep
    });

    it('sweeps a large map a tenth per tick at most, all of it within ten ticks', async () => {
      for (let i = 0; i < 25_000; i++) await backend.acquire({ ...ref(`s${i}`, 't'), ttl: 100 });
      await jest.advanceTimersByTimeAsync(1_000);
      expect(backend.trackedKeys).toBe(25_000 - 2_500);
      await jest.advanceTimersByTimeAsync(9_000);
      expect(backend.trackedKeys).toBe(0);
    });

    it('hands an expiring key to its queued waiter at the expiry, not before, also after an extend', async () => {
      await backend.acquire({ ...ref('q', 'holder'), ttl: 500 });
      const woken: number[] = [];
      backend.onWake('waiter', (handoff) => woken.push(handoff?.fencingTokens[0] ?? -1));
      const busy = await backend.acquire({ ...ref('q', 'waiter'), ttl: 500, queueFor: 10_000 });
      expect(busy.acquired).toBe(false);
      await jest.advanceTimersByTimeAsync(300);
      expect(await backend.extend([{ ...ref('q', 'holder'), ttl: 500 }])).toEqual([true]);
      await jest.advanceTimersByTimeAsync(400); // past the first expiry, before the extended one
      expect(woken).toEqual([]);
      await jest.advanceTimersByTimeAsync(150);
      expect(woken).toHaveLength(1);
      expect(await backend.extend([{ ...ref('q', 'waiter'), ttl: 500 }])).toEqual([true]);
      expect(await backend.release(ref('q', 'waiter'))).toBe(true);
      expect(backend.trackedKeys).toBe(0);
    });
  });
});

describe('MemoryLockBackend: bounded memory with lazy expiry', () => {
  afterEach(() => jest.useRealTimers());

  it('stays bounded while more than 1000 unreleased keys a second run out (the sweep must keep up)', async () => {
    jest.useFakeTimers();
    const backend = new MemoryLockBackend();
    // 2000 new keys a second, each left to expire (a throttle / run-once-per-ttl pattern, or
    // holders that died): the old backend kept ~200 (the live ones). The sweep's own promise is
    // "every expired key goes within ten ticks", so at most ~11 s worth may linger: 22,000.
    const perStep = 200;
    const stepMs = 100;
    let n = 0;
    const sizes: number[] = [];
    for (let step = 0; step < 450; step++) {
      for (let i = 0; i < perStep; i++) {
        await backend.acquire({ keys: [`t${n}`], token: `x${n}`, ttl: 100 });
        n++;
      }
      await jest.advanceTimersByTimeAsync(stepMs);
      if (step % 50 === 49) sizes.push(backend.trackedKeys);
    }
    // A budget fixed at the start of a pass (1000 here, the map was small) never ends the pass
    // while keys are appended faster than the cursor moves: the map would grow for ever.
    expect(sizes[sizes.length - 1]).toBeLessThanOrEqual(2000 * 12);
    expect(sizes[sizes.length - 1] - sizes[sizes.length - 3]).toBeLessThan(5000); // not growing
    await backend.close();
  }, 60_000);
});

describe('MemoryLockBackend: timers made under jest fake timers', () => {
  afterEach(() => jest.useRealTimers());

  it('sweeps again in real time after a test that used fake timers released everything', async () => {
    const backend = new MemoryLockBackend();
    try {
      // A test with fake timers on a shared backend (beforeAll module, testing kit): it cleans up.
      jest.useFakeTimers();
      await backend.acquire({ keys: ['a'], token: 't1', ttl: 1000 });
      expect(await backend.release({ keys: ['a'], token: 't1' })).toBe(true);
      expect(backend.trackedKeys).toBe(0);
      jest.useRealTimers();
      // The next test, real timers: a key left to expire.
      await backend.acquire({ keys: ['b'], token: 't2', ttl: 20 });
      await new Promise((r) => setTimeout(r, 2_300));
      expect((await backend.inspect('b')).held).toBe(false);
      // Not the fake interval of the uninstalled clock, which never fires again.
      expect(backend.trackedKeys).toBe(0);
    } finally {
      await backend.close();
    }
  }, 10_000);
});

describe('MemoryLockBackend: cancel of the first waiter', () => {
  it('hands the key to the waiter behind a cancelled head waiter at once, not at its retryAfter', async () => {
    const backend = new MemoryLockBackend();
    try {
      await backend.acquire({ keys: ['b'], token: 'h', ttl: 60_000 });
      // w (first in line for a, free) waits for b too; x waits behind w for a only.
      await backend.acquire({ keys: ['a', 'b'], token: 'w', ttl: 1000, queueFor: 10_000 });
      const woken: number[] = [];
      backend.onWake('x', (handoff) => woken.push(handoff?.fencingTokens[0] ?? -1));
      const x = await backend.acquire({ keys: ['a'], token: 'x', ttl: 1000, queueFor: 10_000 });
      if (x.acquired) throw new Error('x granted');
      expect(x.retryAfter).toBeGreaterThan(9_000); // w's whole queueFor
      await backend.cancel({ keys: ['a', 'b'], token: 'w' }); // w gives up (abort, timeout)
      await new Promise((r) => setTimeout(r, 10));
      // Handed over now, not at x's retry (w's remaining wait, 10 s here).
      expect(woken).toHaveLength(1);
    } finally {
      await backend.close();
    }
  });
});
