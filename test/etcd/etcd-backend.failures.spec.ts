import { LockBackendError } from '../../lib/errors/lock-backend.error';
import { freePort } from '../servers/server.process';
import { eventually } from '../support/async.helpers';
import { etcdHosts } from '../support/test-env';
import { newToken, uniqueKey } from '../support/test-ids';
import { Resources, startProxy, waitForLock } from './etcd-test.helpers';

/** Runs `action` and returns its rejection and how long it took, in ms. */
async function rejection(
  action: () => Promise<unknown>,
): Promise<{ error: unknown; took: number }> {
  const start = Date.now();
  try {
    await action();
  } catch (error) {
    return { error, took: Date.now() - start };
  }
  throw new Error('expected a rejection');
}

describe('EtcdLockBackend when etcd is unreachable (real etcd)', () => {
  const resources = new Resources();
  afterAll(() => resources.closeAll());

  it.each(['blackhole', 'refuse'] as const)(
    'fails with LockBackendError in bounded time when etcd stops answering (%s), and recovers',
    async (mode) => {
      const proxy = await startProxy(etcdHosts()[0]);
      try {
        const backend = resources.backend({
          hosts: [proxy.host],
          commandTimeout: 1_000,
          sessionTtl: 10_000,
        });
        const key = uniqueKey(`outage-${mode}`);
        const token = newToken();
        expect((await backend.acquire({ keys: [key], token, ttl: 30_000 })).acquired).toBe(true);

        proxy.cut(mode);
        for (const action of [
          () => backend.extend([{ keys: [key], token, ttl: 30_000 }]),
          () =>
            backend.acquire({ keys: [uniqueKey('outage-other')], token: newToken(), ttl: 1_000 }),
          () => backend.acquire({ keys: [key], token: newToken(), ttl: 1_000, queueFor: 5_000 }),
          () => backend.inspect(key),
          () => backend.release({ keys: [key], token }),
        ]) {
          const { error, took } = await rejection(action);
          expect(error).toBeInstanceOf(LockBackendError);
          expect(took).toBeLessThan(8_000);
        }

        proxy.heal();
        // The client's circuit breaker stays open for up to 5 s after the failures.
        const fresh = uniqueKey('outage-healed');
        let acquired = false;
        await eventually(
          async () => {
            acquired = await backend
              .acquire({ keys: [fresh], token: newToken(), ttl: 5_000 })
              .then((result) => result.acquired)
              .catch(() => false);
            return acquired;
          },
          20_000,
          'acquire after healing',
        );
        expect(acquired).toBe(true);
        // The failed release is retried in the background, so the lock does not stay stuck.
        const observer = resources.backend();
        await eventually(
          async () => !(await observer.inspect(key)).held,
          20_000,
          'lock released after healing',
        );
      } finally {
        await proxy.close();
      }
    },
    60_000,
  );

  it("names the host and etcd's error once etcd3's circuit breaker is open, also for a client of the user's", async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const backend = resources.backend({
      client: resources.client([`http://${address}`]),
      commandTimeout: 1_000,
    });
    const messages: string[] = [];
    // etcd3 opens a host's breaker after 3 failures in a row, for 5 s: the later calls meet it.
    for (const action of [
      () => backend.ping(),
      () => backend.acquire({ keys: [uniqueKey('breaker')], token: newToken(), ttl: 1_000 }),
      () => backend.inspect(uniqueKey('breaker')),
      () => backend.ping(),
    ]) {
      const { error } = await rejection(action);
      expect(error).toBeInstanceOf(LockBackendError);
      messages.push((error as Error).message);
    }
    expect(messages.some((m) => m.includes('etcd3 pauses calls to'))).toBe(true);
    for (const message of messages) {
      expect(message).toContain(address);
      expect(message).toMatch(/UNAVAILABLE.*ECONNREFUSED/);
    }
  });

  it('hears of a release made while its watch was disconnected (the watch resumes where it was)', async () => {
    const proxy = await startProxy(etcdHosts()[0]);
    try {
      // retryAfter is bounded by the holder's ttl and session ttl: a waiter that missed the
      // release would sit out 60 s.
      const direct = resources.backend({ sessionTtl: 60_000 });
      const waiterBackend = resources.backend({ hosts: [proxy.host], commandTimeout: 1_000 });
      const key = uniqueKey('watch-resume');
      const holder = newToken();
      expect((await direct.acquire({ keys: [key], token: holder, ttl: 60_000 })).acquired).toBe(
        true,
      );
      let queued!: () => void;
      const isQueued = new Promise<void>((resolve) => (queued = resolve));
      const waiting = waitForLock(waiterBackend, [key], {
        ttl: 5_000,
        wait: 40_000,
        onQueued: queued,
      }).then((got) => ({ got, at: Date.now() }));
      await isQueued;
      proxy.cut('refuse');
      expect(await direct.release({ keys: [key], token: holder })).toBe(true);
      const healedAt = Date.now();
      proxy.heal();
      const { got, at } = await waiting;
      // grpc-js and etcd3 reconnect within a few seconds; far below the holder's 60 s.
      expect(at - healedAt).toBeLessThan(20_000);
      expect(got.wakes).toBeGreaterThanOrEqual(1);
      expect(await waiterBackend.release({ keys: [key], token: got.token })).toBe(true);
    } finally {
      await proxy.close();
    }
  }, 60_000);
});
