import type { BackendLossEvent } from '../../lib/backends/lock-backend.interface';
import { eventually, sleep } from '../support/async.helpers';
import { etcdHosts } from '../support/test-env';
import { newToken, uniqueKey } from '../support/test-ids';
import { Resources, members, startProxy, waitForLock } from './etcd-test.helpers';

describe('EtcdLockBackend per-lock ttl and session loss (real etcd)', () => {
  const resources = new Resources();
  afterAll(() => resources.closeAll());

  it("bounds another client's retryAfter by the holder's ttl, not by the session lease", async () => {
    const holderBackend = resources.backend();
    const waiterBackend = resources.backend();
    const key = uniqueKey('ttl');
    const holder = newToken();
    expect((await holderBackend.acquire({ keys: [key], token: holder, ttl: 600 })).acquired).toBe(
      true,
    );
    const busy = await waiterBackend.acquire({ keys: [key], token: newToken(), ttl: 5_000 });
    expect(busy.acquired).toBe(false);
    if (busy.acquired) return;
    expect(busy.retryAfter).toBeLessThanOrEqual(600);
    expect(await holderBackend.release({ keys: [key], token: holder })).toBe(true);
  });

  it('keeps a lock while it is extended', async () => {
    const backend = resources.backend();
    const other = resources.backend();
    const key = uniqueKey('extend');
    const token = newToken();
    expect((await backend.acquire({ keys: [key], token, ttl: 400 })).acquired).toBe(true);
    for (let i = 0; i < 4; i++) {
      await sleep(150);
      expect(await backend.extend([{ keys: [key], token, ttl: 400 }])).toEqual([true]);
    }
    expect((await other.acquire({ keys: [key], token: newToken(), ttl: 400 })).acquired).toBe(
      false,
    );
    expect(await backend.release({ keys: [key], token })).toBe(true);
  });

  it('reports every lock of a revoked session lost and serves other backends only after that', async () => {
    const backend = resources.backend({ sessionTtl: 3_000 });
    const other = resources.backend();
    const raw = resources.client();
    const keys = [uniqueKey('lost-1'), uniqueKey('lost-2')];
    const tokens = [newToken(), newToken()];
    for (let i = 0; i < 2; i++) {
      expect(
        (await backend.acquire({ keys: [keys[i]], token: tokens[i], ttl: 30_000 })).acquired,
      ).toBe(true);
    }
    const events: BackendLossEvent[] = [];
    backend.onLost((event) => events.push(event));

    const timeline: string[] = [];
    const waiting = waitForLock(other, [keys[0]], { ttl: 5_000, wait: 15_000 }).then((got) => {
      timeline.push('granted');
      return got;
    });
    await sleep(100);
    const [holderMember] = await members(raw, keys[0]);
    timeline.push('revoked');
    await raw.leaseClient.leaseRevoke({ ID: holderMember.lease });

    const got = await waiting;
    expect(timeline).toEqual(['revoked', 'granted']);
    expect(got.fencingTokens[0]).toBeGreaterThan(holderMember.createRevision);
    // The next keep-alive (every sessionTtl / 3) hears that the lease is gone.
    await eventually(() => events.length > 0, 5_000, 'onLost event');
    expect(events[0].locks.map((lock) => lock.token).sort()).toEqual([...tokens].sort());
    expect(
      await backend.extend(keys.map((key, i) => ({ keys: [key], token: tokens[i], ttl: 30_000 }))),
    ).toEqual([false, false]);

    // The next acquire opens a new session.
    const fresh = uniqueKey('lost-fresh');
    expect(
      (await backend.acquire({ keys: [fresh], token: newToken(), ttl: 30_000 })).acquired,
    ).toBe(true);
    const [freshMember] = await members(raw, fresh);
    expect(freshMember.lease).not.toBe(holderMember.lease);
  });

  it('wakes the waiters of a lost session, which queue again on a new one and are served', async () => {
    const holderBackend = resources.backend();
    const waiterBackend = resources.backend({ sessionTtl: 3_000 });
    const raw = resources.client();
    const key = uniqueKey('lost-waiter');
    const holder = newToken();
    // retryAfter is 10 s here (the holder's session ttl): a waiter that was not woken would
    // queue again only then, after the 5 s bound below.
    expect(
      (await holderBackend.acquire({ keys: [key], token: holder, ttl: 60_000 })).acquired,
    ).toBe(true);
    let queued!: () => void;
    const isQueued = new Promise<void>((resolve) => (queued = resolve));
    const waiting = waitForLock(waiterBackend, [key], {
      ttl: 5_000,
      wait: 20_000,
      onQueued: queued,
    });
    await isQueued;
    const [, waiterMember] = await members(raw, key);
    await raw.leaseClient.leaseRevoke({ ID: waiterMember.lease });
    // Its next keep-alive (within sessionTtl / 3) finds the lease gone; the woken waiter queues
    // again under a new lease.
    await eventually(
      async () =>
        (await members(raw, key)).some(
          (m) => m.lease !== waiterMember.lease && m.createRevision > waiterMember.createRevision,
        ),
      5_000,
      'queued again on a new session',
    );
    expect(await holderBackend.release({ keys: [key], token: holder })).toBe(true);
    const got = await waiting;
    expect(got.wakes).toBeGreaterThanOrEqual(2);
    expect(got.fencingTokens[0]).toBeGreaterThan(waiterMember.createRevision);
    expect(await waiterBackend.release({ keys: [key], token: got.token })).toBe(true);
  });

  it('checks the session at once when extend finds a lock gone', async () => {
    const backend = resources.backend({ sessionTtl: 30_000 });
    const raw = resources.client();
    const keys = [uniqueKey('probe-1'), uniqueKey('probe-2')];
    const tokens = [newToken(), newToken()];
    for (let i = 0; i < 2; i++) {
      expect(
        (await backend.acquire({ keys: [keys[i]], token: tokens[i], ttl: 30_000 })).acquired,
      ).toBe(true);
    }
    const events: BackendLossEvent[] = [];
    backend.onLost((event) => events.push(event));
    const [member] = await members(raw, keys[0]);
    await raw.leaseClient.leaseRevoke({ ID: member.lease });
    // Keep-alives run every 10 s here; the failed extend triggers an immediate one.
    expect(await backend.extend([{ keys: [keys[0]], token: tokens[0], ttl: 30_000 }])).toEqual([
      false,
    ]);
    await eventually(() => events.length > 0, 5_000, 'onLost event');
    expect(events[0].locks.map((lock) => lock.token)).toEqual([tokens[1]]);
  });

  it('declares loss when keep-alives stop, before etcd can hand the lock to someone else', async () => {
    const proxy = await startProxy(etcdHosts()[0]);
    try {
      const partitioned = resources.backend({
        hosts: [proxy.host],
        sessionTtl: 2_000,
        commandTimeout: 500,
      });
      const other = resources.backend();
      const key = uniqueKey('partition');
      const token = newToken();
      expect((await partitioned.acquire({ keys: [key], token, ttl: 60_000 })).acquired).toBe(true);
      let lostAt = 0;
      partitioned.onLost(() => (lostAt = Date.now()));

      const waiting = waitForLock(other, [key], { ttl: 5_000, wait: 20_000 }).then((got) => ({
        got,
        at: Date.now(),
      }));
      await sleep(100);
      proxy.cut('blackhole');

      const { got, at } = await waiting;
      expect(lostAt).toBeGreaterThan(0);
      expect(lostAt).toBeLessThanOrEqual(at);
      expect(got.fencingTokens).toHaveLength(1);
      expect(await partitioned.extend([{ keys: [key], token, ttl: 60_000 }])).toEqual([false]);
    } finally {
      await proxy.close();
    }
  });
});
