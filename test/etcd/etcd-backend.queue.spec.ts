import { eventually, sleep } from '../support/async.helpers';
import { newToken, uniqueKey } from '../support/test-ids';
import { Resources, members, waitForLock } from './etcd-test.helpers';

describe('EtcdLockBackend wait queue (real etcd)', () => {
  const resources = new Resources();
  afterAll(() => resources.closeAll());

  it('serves 20 waiters in arrival order, each woken and granted in turn', async () => {
    // More waiters than one attempt reads ahead (16): the last ones follow only part of the
    // queue and must read further when that part has left.
    const count = 20;
    const backends = [resources.backend(), resources.backend(), resources.backend()];
    const raw = resources.client();
    const key = uniqueKey('fifo');
    const holder = newToken();
    expect((await backends[0].acquire({ keys: [key], token: holder, ttl: 20_000 })).acquired).toBe(
      true,
    );

    const order: number[] = [];
    const fencing: number[] = [];
    const wakes: number[] = [];
    const waits: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      const backend = backends[i % backends.length];
      let queued!: () => void;
      const isQueued = new Promise<void>((resolve) => (queued = resolve));
      waits.push(
        waitForLock(backend, [key], { ttl: 20_000, wait: 25_000, onQueued: queued }).then(
          async (got) => {
            order.push(i);
            fencing.push(got.fencingTokens[0]);
            wakes.push(got.wakes);
            await sleep(5);
            expect(await backend.release({ keys: [key], token: got.token })).toBe(true);
          },
        ),
      );
      // Arrival order is queue order: wait until waiter i has its member key.
      await isQueued;
    }
    expect(await members(raw, key)).toHaveLength(count + 1);
    expect(await backends[0].release({ keys: [key], token: holder })).toBe(true);
    await Promise.all(waits);
    expect(order).toEqual(Array.from({ length: count }, (_, i) => i));
    for (let i = 1; i < fencing.length; i++) expect(fencing[i]).toBeGreaterThan(fencing[i - 1]);
    // Served by wake-ups, not by re-attempts after retryAfter (which is 10 s here).
    expect(wakes.every((n) => n >= 1)).toBe(true);
    expect(await members(raw, key)).toHaveLength(0);
  });

  it('wakes only the waiter just behind a release (no herd)', async () => {
    const backend = resources.backend();
    const key = uniqueKey('herd');
    const holder = newToken();
    expect((await backend.acquire({ keys: [key], token: holder, ttl: 20_000 })).acquired).toBe(
      true,
    );
    const tokens = [newToken(), newToken(), newToken()];
    const wakes = tokens.map(() => 0);
    const unsubscribe = tokens.map((token, i) => backend.onWake(token, () => (wakes[i] += 1)));
    for (const token of tokens) {
      expect(
        (await backend.acquire({ keys: [key], token, ttl: 20_000, queueFor: 20_000 })).acquired,
      ).toBe(false);
    }
    expect(await backend.release({ keys: [key], token: holder })).toBe(true);
    await eventually(() => wakes[0] > 0, 10_000, 'first waiter woken');
    const granted = await backend.acquire({
      keys: [key],
      token: tokens[0],
      ttl: 20_000,
      queueFor: 20_000,
    });
    expect(granted.acquired).toBe(true);
    await sleep(200);
    expect(wakes.slice(1)).toEqual([0, 0]);
    unsubscribe.forEach((stop) => stop());
    for (const token of tokens.slice(1)) await backend.cancel({ keys: [key], token });
    await backend.release({ keys: [key], token: tokens[0] });
  });

  it('refreshes the queue entry of a token instead of adding a second one', async () => {
    const backend = resources.backend();
    const raw = resources.client();
    const key = uniqueKey('refresh');
    expect((await backend.acquire({ keys: [key], token: newToken(), ttl: 20_000 })).acquired).toBe(
      true,
    );
    const waiter = newToken();
    for (let i = 0; i < 3; i++) {
      expect(
        (await backend.acquire({ keys: [key], token: waiter, ttl: 20_000, queueFor: 5_000 }))
          .acquired,
      ).toBe(false);
    }
    const queued = await members(raw, key);
    expect(queued).toHaveLength(2);
    expect(queued[1].key.endsWith(waiter)).toBe(true);
    await backend.cancel({ keys: [key], token: waiter });
    await backend.cancel({ keys: [key], token: waiter });
    expect(await members(raw, key)).toHaveLength(1);
  });

  it('drops a queue entry that no attempt refreshed within queueFor', async () => {
    const backend = resources.backend();
    const raw = resources.client();
    const key = uniqueKey('queue-expiry');
    expect((await backend.acquire({ keys: [key], token: newToken(), ttl: 20_000 })).acquired).toBe(
      true,
    );
    expect(
      (await backend.acquire({ keys: [key], token: newToken(), ttl: 20_000, queueFor: 300 }))
        .acquired,
    ).toBe(false);
    expect(await members(raw, key)).toHaveLength(2);
    await eventually(
      async () => (await members(raw, key)).length === 1,
      5_000,
      'queue entry removed',
    );
  });

  it('orders multi-key waiters consistently across keys (no deadlock)', async () => {
    const a = resources.backend();
    const b = resources.backend();
    const [k1, k2] = [uniqueKey('mk-1'), uniqueKey('mk-2')];
    const h1 = newToken();
    const h2 = newToken();
    expect((await a.acquire({ keys: [k1], token: h1, ttl: 20_000 })).acquired).toBe(true);
    expect((await a.acquire({ keys: [k2], token: h2, ttl: 20_000 })).acquired).toBe(true);

    const granted: string[] = [];
    const both = waitForLock(b, [k1, k2], { ttl: 20_000, wait: 20_000 }).then(async (got) => {
      granted.push('both');
      await sleep(20);
      await b.release({ keys: [k1, k2], token: got.token });
    });
    await sleep(100);
    const onlyFirst = waitForLock(a, [k1], { ttl: 20_000, wait: 20_000 }).then(async (got) => {
      granted.push('first');
      await a.release({ keys: [k1], token: got.token });
    });
    const onlySecond = waitForLock(b, [k2], { ttl: 20_000, wait: 20_000 }).then(async (got) => {
      granted.push('second');
      await b.release({ keys: [k2], token: got.token });
    });
    await sleep(100);
    expect(await a.release({ keys: [k1], token: h1 })).toBe(true);
    await sleep(100);
    // k1 is free of its holder, but the multi-key waiter still waits for k2 and keeps its place.
    expect(granted).toEqual([]);
    expect(await a.release({ keys: [k2], token: h2 })).toBe(true);
    await Promise.all([both, onlyFirst, onlySecond]);
    expect(granted[0]).toBe('both');
    expect(granted).toHaveLength(3);
  });
});
