import type { BackendAcquireResult } from '../../lib/backends/lock-backend.interface';
import type { RedisLockBackend } from '../../lib/backends/redis';
import {
  eventually,
  newToken,
  Resources,
  settlesWithin,
  sleep,
  uniqueId,
} from './redis-test.helpers';

function fencing(result: BackendAcquireResult): readonly number[] {
  if (!result.acquired) throw new Error('expected the lock to be acquired');
  return result.fencingTokens;
}

/** A promise that resolves on the next wake-up of `token`, and its unsubscribe function. */
function nextWake(
  backend: RedisLockBackend,
  token: string,
): { woken: Promise<void>; stop: () => void } {
  let stop: () => void = () => undefined;
  const woken = new Promise<void>((resolve) => {
    stop = backend.onWake(token, resolve);
  });
  return { woken, stop };
}

describe('RedisLockBackend: FIFO queue, handoff and wake-ups', () => {
  const resources = new Resources();
  let id: string;
  const key = (name: string): string => `lock:${id}:${name}`;

  beforeEach(() => {
    id = uniqueId();
  });
  afterEach(() => resources.closeAll());

  it('hands the lock to 10 queued waiters in arrival order, across backend instances', async () => {
    const backends = [resources.backend(), resources.backend()];
    const k = key('fifo');
    const holder = newToken('holder');
    expect((await backends[0].acquire({ keys: [k], token: holder, ttl: 10_000 })).acquired).toBe(
      true,
    );

    const woken: string[] = [];
    const waiters = Array.from({ length: 10 }, (_, i) => {
      const token = newToken(`w${i}`);
      const backend = backends[i % 2];
      const stop = backend.onWake(token, () => woken.push(token));
      return { token, backend, stop };
    });
    for (const w of waiters) {
      const r = await w.backend.acquire({
        keys: [k],
        token: w.token,
        ttl: 10_000,
        queueFor: 20_000,
      });
      expect(r.acquired).toBe(false);
    }
    // A second attempt refreshes the entry; it does not move the waiter or add another entry.
    await waiters[0].backend.acquire({
      keys: [k],
      token: waiters[0].token,
      ttl: 10_000,
      queueFor: 20_000,
    });
    const raw = resources.client();
    expect(await raw.zcard(`{${k}}:q`)).toBe(10);

    // A newcomer, queued or not, does not jump the queue.
    const newcomer = newToken('newcomer');
    expect((await backends[1].acquire({ keys: [k], token: newcomer, ttl: 1000 })).acquired).toBe(
      false,
    );

    let previous = { keys: [k], token: holder };
    let previousBackend = backends[0];
    let lastFencing = 0;
    for (let i = 0; i < waiters.length; i++) {
      expect(await previousBackend.release(previous)).toBe(true);
      const w = waiters[i];
      expect(await eventually(() => woken.includes(w.token), 5000, 5)).toBe(true);
      // Only the head was woken, never someone behind it.
      expect(woken).toEqual(waiters.slice(0, i + 1).map((x) => x.token));
      // While reserved for the woken waiter, nobody else gets in.
      expect((await backends[1].acquire({ keys: [k], token: newcomer, ttl: 1000 })).acquired).toBe(
        false,
      );
      const granted = await w.backend.acquire({ keys: [k], token: w.token, ttl: 10_000 });
      expect(fencing(granted)[0]).toBeGreaterThan(lastFencing);
      lastFencing = fencing(granted)[0];
      w.stop();
      previous = { keys: [k], token: w.token };
      previousBackend = w.backend;
    }
    expect(await previousBackend.release(previous)).toBe(true);
    expect(await raw.exists(`{${k}}`, `{${k}}:q`, `{${k}}:w`)).toBe(0);
    expect(backends[0].wakeListenerCount + backends[1].wakeListenerCount).toBe(0);
  });

  it('a dead queued waiter blocks the key for at most claimWindow', async () => {
    const claimWindow = 300;
    const backend = resources.backend({ claimWindow });
    const k = key('dead');
    const holder = newToken('holder');
    const dead = newToken('dead');
    const live = newToken('live');
    await backend.acquire({ keys: [k], token: holder, ttl: 10_000 });
    await backend.acquire({ keys: [k], token: dead, ttl: 10_000, queueFor: 30_000 });
    const wake = nextWake(backend, live);
    await backend.acquire({ keys: [k], token: live, ttl: 10_000, queueFor: 30_000 });

    const releasedAt = Date.now();
    await backend.release({ keys: [k], token: holder });
    // The dead waiter never claims; the live one retries on retryAfter until it gets the lock.
    let granted: BackendAcquireResult | undefined;
    for (let i = 0; i < 100 && Date.now() - releasedAt < 10_000; i++) {
      const r = await backend.acquire({ keys: [k], token: live, ttl: 10_000, queueFor: 30_000 });
      if (r.acquired) {
        granted = r;
        break;
      }
      expect(r.retryAfter).toBeLessThanOrEqual(claimWindow);
      await Promise.race([sleep(r.retryAfter), wake.woken]);
    }
    expect(granted?.acquired).toBe(true);
    expect(Date.now() - releasedAt).toBeLessThan(claimWindow + 3000);
    wake.stop();
  });

  it('an expired holder hands the key to the queue head on the next attempt, not to a newcomer', async () => {
    const backend = resources.backend();
    const k = key('expiry');
    const waiter = newToken('waiter');
    await backend.acquire({ keys: [k], token: newToken('holder'), ttl: 100 });
    const wake = nextWake(backend, waiter);
    await backend.acquire({ keys: [k], token: waiter, ttl: 5000, queueFor: 10_000 });
    await sleep(200);
    const newcomer = await backend.acquire({ keys: [k], token: newToken('newcomer'), ttl: 5000 });
    expect(newcomer.acquired).toBe(false);
    expect(await settlesWithin(wake.woken, 5000)).toBe(true);
    expect((await backend.acquire({ keys: [k], token: waiter, ttl: 5000 })).acquired).toBe(true);
    wake.stop();
  });

  it('cancel removes a waiter and releases an unclaimed handoff, idempotently', async () => {
    const backend = resources.backend();
    const raw = resources.client();
    const k = key('cancel');
    const holder = newToken('holder');
    const first = newToken('first');
    const second = newToken('second');
    await backend.acquire({ keys: [k], token: holder, ttl: 10_000 });
    await backend.acquire({ keys: [k], token: first, ttl: 10_000, queueFor: 10_000 });
    const secondWake = nextWake(backend, second);
    await backend.acquire({ keys: [k], token: second, ttl: 10_000, queueFor: 10_000 });

    await backend.release({ keys: [k], token: holder });
    expect(await raw.hget(`{${k}}`, 'o')).toBe(first);
    // The first waiter gives up before claiming: the key goes on to the second one.
    await backend.cancel({ keys: [k], token: first });
    await backend.cancel({ keys: [k], token: first });
    expect(await settlesWithin(secondWake.woken, 5000)).toBe(true);
    expect((await backend.acquire({ keys: [k], token: first, ttl: 1000 })).acquired).toBe(false);
    expect((await backend.acquire({ keys: [k], token: second, ttl: 10_000 })).acquired).toBe(true);
    secondWake.stop();

    // A waiter that cancels while still queued leaves nothing behind.
    const third = newToken('third');
    await backend.acquire({ keys: [k], token: third, ttl: 10_000, queueFor: 10_000 });
    expect(await raw.zcard(`{${k}}:q`)).toBe(1);
    await backend.cancel({ keys: [k], token: third });
    expect(await raw.exists(`{${k}}:q`, `{${k}}:w`)).toBe(0);
    // Cancel never touches a claimed grant.
    await backend.cancel({ keys: [k], token: second });
    expect((await backend.inspect(k)).held).toBe(true);
    expect(await backend.release({ keys: [k], token: second })).toBe(true);
    expect(await raw.exists(`{${k}}`, `{${k}}:q`, `{${k}}:w`)).toBe(0);
  });

  it('a multi-key waiter gets all its keys in FIFO order, keeping handed keys reserved', async () => {
    const backend = resources.backend({ claimWindow: 1000 });
    const [a, b] = [key('a'), key('b')];
    const holderA = newToken('holderA');
    const holderB = newToken('holderB');
    const multi = newToken('multi');
    await backend.acquire({ keys: [a], token: holderA, ttl: 10_000 });
    await backend.acquire({ keys: [b], token: holderB, ttl: 10_000 });

    let wakes = 0;
    const stop = backend.onWake(multi, () => wakes++);
    const first = await backend.acquire({
      keys: [a, b],
      token: multi,
      ttl: 10_000,
      queueFor: 10_000,
    });
    expect(first.acquired).toBe(false);

    await backend.release({ keys: [a], token: holderA });
    expect(await eventually(() => wakes === 1, 5000, 5)).toBe(true);
    const partial = await backend.acquire({
      keys: [a, b],
      token: multi,
      ttl: 10_000,
      queueFor: 10_000,
    });
    expect(partial.acquired).toBe(false);
    // It must come back before the reservation of `a` lapses.
    if (!partial.acquired) expect(partial.retryAfter).toBeLessThanOrEqual(500);
    // `a` stays reserved for the multi-key waiter while it waits for `b`.
    expect((await backend.acquire({ keys: [a], token: newToken(), ttl: 1000 })).acquired).toBe(
      false,
    );

    await backend.release({ keys: [b], token: holderB });
    expect(await eventually(() => wakes === 2, 5000, 5)).toBe(true);
    const granted = await backend.acquire({ keys: [a, b], token: multi, ttl: 10_000 });
    expect(fencing(granted)).toHaveLength(2);
    stop();
    expect(await backend.release({ keys: [a, b], token: multi })).toBe(true);
  });

  it('a queued multi-key waiter keeps its place on a key that is free', async () => {
    const backend = resources.backend();
    const [a, b] = [key('a'), key('b')];
    const multi = newToken('multi');
    const holderB = newToken('holderB');
    await backend.acquire({ keys: [b], token: holderB, ttl: 10_000 });
    const wake = nextWake(backend, multi);
    await backend.acquire({ keys: [a, b], token: multi, ttl: 10_000, queueFor: 10_000 });
    // `a` is free, but the older multi-key waiter is queued on it.
    expect((await backend.acquire({ keys: [a], token: newToken(), ttl: 1000 })).acquired).toBe(
      false,
    );
    expect(await settlesWithin(wake.woken, 5000)).toBe(true);
    await backend.release({ keys: [b], token: holderB });
    expect((await backend.acquire({ keys: [a, b], token: multi, ttl: 10_000 })).acquired).toBe(
      true,
    );
    wake.stop();
  });

  it('a busy attempt without queueFor leaves no trace', async () => {
    const backend = resources.backend();
    const raw = resources.client();
    const k = key('trace');
    await backend.acquire({ keys: [k], token: newToken(), ttl: 5000 });
    await backend.acquire({ keys: [k], token: newToken(), ttl: 5000 });
    await backend.acquire({ keys: [k], token: newToken(), ttl: 5000, queueFor: 0 });
    expect(await raw.exists(`{${k}}:q`, `{${k}}:w`)).toBe(0);
  });

  it('wake-up listeners are dropped on unsubscribe (memory bounded by live waiters)', async () => {
    const backend = resources.backend();
    const stops = Array.from({ length: 100 }, () => backend.onWake(newToken(), () => undefined));
    const token = newToken();
    const s1 = backend.onWake(token, () => undefined);
    const s2 = backend.onWake(token, () => undefined);
    expect(backend.wakeListenerCount).toBe(101);
    for (const stop of stops) stop();
    s1();
    expect(backend.wakeListenerCount).toBe(1);
    s2();
    s2();
    expect(backend.wakeListenerCount).toBe(0);
  });
});
