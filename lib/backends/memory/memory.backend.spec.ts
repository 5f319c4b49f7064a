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

  it('checks the owner on extend and release', async () => {
    await backend.acquire({ ...ref('k', 'a'), ttl: 1000 });
    expect(
      await backend.extend([
        { ...ref('k', 'b'), ttl: 1000 },
        { ...ref('k', 'a'), ttl: 1000 },
      ]),
    ).toEqual([false, true]);
    expect(await backend.release(ref('k', 'b'))).toBe(false);
    expect((await backend.inspect('k')).held).toBe(true);
    expect(await backend.release(ref('k', 'a'))).toBe(true);
    expect(await backend.release(ref('k', 'a'))).toBe(false);
  });

  it('hands a released key to the first queued waiter, wakes it, and lets it claim', async () => {
    await backend.acquire({ ...ref('k', 'a'), ttl: 1000 });
    const woken: string[] = [];
    backend.onWake('b', () => woken.push('b'));
    backend.onWake('c', () => woken.push('c'));
    expect((await backend.acquire({ ...ref('k', 'b'), ttl: 5000, queueFor: 1000 })).acquired).toBe(
      false,
    );
    expect((await backend.acquire({ ...ref('k', 'c'), ttl: 5000, queueFor: 1000 })).acquired).toBe(
      false,
    );
    await backend.release(ref('k', 'a'));
    await Promise.resolve();
    expect(woken).toEqual(['b']);
    // Nobody else can take it, not even a queued waiter further back.
    expect((await backend.acquire({ ...ref('k', 'c'), ttl: 5000, queueFor: 1000 })).acquired).toBe(
      false,
    );
    expect((await backend.acquire({ ...ref('k', 'x'), ttl: 5000 })).acquired).toBe(false);
    const claimed = await backend.acquire({ ...ref('k', 'b'), ttl: 5000, queueFor: 1000 });
    expect(claimed.acquired).toBe(true);
    expect((await backend.inspect('k')).ttl).toBeGreaterThan(1000);
  });

  it('does not let an unclaimed handoff block the queue past the claim window', async () => {
    await backend.acquire({ ...ref('k', 'a'), ttl: 1000 });
    await backend.acquire({ ...ref('k', 'dead'), ttl: 5000, queueFor: 5000 });
    await backend.acquire({ ...ref('k', 'next'), ttl: 5000, queueFor: 5000 });
    await backend.release(ref('k', 'a')); // handed to 'dead', which never claims
    await new Promise((r) => setTimeout(r, 150));
    // The claim window (100 ms) ran out and the key moved on to the next waiter.
    expect(
      (await backend.acquire({ ...ref('k', 'next'), ttl: 5000, queueFor: 5000 })).acquired,
    ).toBe(true);
  });

  it('issues strictly increasing fencing tokens, also after expiry', async () => {
    const tokens: number[] = [];
    for (let i = 0; i < 5; i++) {
      const result = await backend.acquire({ ...ref('f', `t${i}`), ttl: 20 });
      if (!result.acquired) throw new Error('busy');
      tokens.push(result.fencingTokens[0]);
      if (i % 2) await backend.release(ref('f', `t${i}`));
      else await new Promise((r) => setTimeout(r, 40)); // let it expire
    }
    expect([...tokens].sort((a, b) => a - b)).toEqual(tokens);
    expect(new Set(tokens).size).toBe(5);
  });

  it('releases a handoff the waiter gave up on', async () => {
    await backend.acquire({ ...ref('k', 'a'), ttl: 1000 });
    await backend.acquire({ ...ref('k', 'b'), ttl: 1000, queueFor: 1000 });
    await backend.release(ref('k', 'a'));
    expect((await backend.inspect('k')).held).toBe(true); // reserved for b
    await backend.cancel(ref('k', 'b'));
    expect((await backend.inspect('k')).held).toBe(false);
  });
});
