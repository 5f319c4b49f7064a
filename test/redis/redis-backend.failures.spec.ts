import Redis from 'ioredis';
import type { BackendAcquireResult } from '../../lib/backends/lock-backend.interface';
import { LockBackendError } from '../../lib/errors/lock-backend.error';
import { RedisLockBackend } from '../../lib/backends/redis';
import { freePort } from '../servers/server.process';
import { eventually, timed, within } from '../support/async.helpers';
import { redisUrl } from '../support/test-env';
import { newToken, uniqueId } from '../support/test-ids';
import { OwnRedisServers, Resources } from './redis-test.helpers';

const COMMAND_TIMEOUT = 500;
/** "No hang": generous bound on how long a failing operation may take. */
const FAIL_BOUND = COMMAND_TIMEOUT + 3000;

describe('RedisLockBackend: outages, errors and options', () => {
  const resources = new Resources();
  const servers = new OwnRedisServers();
  let id: string;
  const key = (name: string): string => `lock:${id}:${name}`;

  beforeEach(() => {
    id = uniqueId();
  });
  afterEach(async () => {
    await resources.closeAll();
    await servers.stopAll();
  });

  async function expectBackendError(promise: Promise<unknown>, pattern?: RegExp): Promise<void> {
    const { ms, error } = await timed(promise);
    expect(error).toBeInstanceOf(LockBackendError);
    if (pattern) expect((error as Error).message).toMatch(pattern);
    expect(ms).toBeLessThan(FAIL_BOUND);
  }

  it('fails with LockBackendError in bounded time while Redis is stopped, then recovers after a restart on the same port', async () => {
    const server = await servers.start();
    const url = `redis://127.0.0.1:${server.port}`;
    const channelPrefix = `wake:${id}:`;
    const backend = resources.backend({ url, commandTimeout: COMMAND_TIMEOUT, channelPrefix });
    const raw = resources.client(url);
    const held = { keys: [key('a')], token: newToken() };
    expect((await backend.acquire({ ...held, ttl: 30_000 })).acquired).toBe(true);
    // Subscribe before the outage, so recovery of the wake channel is checked too.
    const stopWarmup = backend.onWake(newToken(), () => undefined);
    await eventually(
      async () => (await wakeChannels(raw, channelPrefix)) === 1,
      5000,
      'wake channel subscribed',
    );
    stopWarmup();

    await server.stop();
    await expectBackendError(backend.acquire({ keys: [key('b')], token: newToken(), ttl: 1000 }));
    await expectBackendError(backend.acquire({ ...held, ttl: 1000, queueFor: 1000 }));
    await expectBackendError(backend.extend([{ ...held, ttl: 1000 }]));
    await expectBackendError(backend.release(held));
    await expectBackendError(backend.cancel(held));
    await expectBackendError(backend.inspect(key('a')));

    await servers.start({ port: server.port, dir: server.dir });
    // No persistence: the lock is gone, and so are the cached scripts (NOSCRIPT -> EVAL).
    await eventually(
      async () => {
        try {
          return (await backend.acquire({ keys: [key('a')], token: newToken(), ttl: 5000 }))
            .acquired;
        } catch (error) {
          expect(error).toBeInstanceOf(LockBackendError);
          return false;
        }
      },
      15_000,
      'acquire after the restart',
    );

    // Wake-ups work again once the subscriber re-subscribed on its own.
    await eventually(
      async () => (await wakeChannels(raw, channelPrefix)) === 1,
      10_000,
      'wake channel subscribed again',
    );
    const holder = newToken('holder');
    const waiter = newToken('waiter');
    let woken = false;
    const stop = backend.onWake(waiter, () => (woken = true));
    await backend.acquire({ keys: [key('c')], token: holder, ttl: 5000 });
    await backend.acquire({ keys: [key('c')], token: waiter, ttl: 5000, queueFor: 5000 });
    await backend.release({ keys: [key('c')], token: holder });
    await eventually(() => woken, 5000, 'wake-up after the restart');
    expect((await backend.acquire({ keys: [key('c')], token: waiter, ttl: 5000 })).acquired).toBe(
      true,
    );
    stop();
  }, 40_000);

  it('while the wake-up subscription is down, waiters retry within half the claim window, then wake-ups resume', async () => {
    const server = await servers.start();
    const url = `redis://127.0.0.1:${server.port}`;
    const claimWindow = 600;
    // A client of ours whose reconnects wait 2 s; the backend's subscriber, its duplicate, too.
    const client = resources.client(url, { retryStrategy: () => 2000 });
    const backend = resources.backend({ client, claimWindow, commandTimeout: COMMAND_TIMEOUT });
    const raw = resources.client(url);
    const k = key('blind');
    const holder = newToken('holder');
    const waiter = newToken('waiter');
    let woken = 0;
    const stop = backend.onWake(waiter, () => woken++);
    const attempt = (): ReturnType<typeof backend.acquire> =>
      backend.acquire({ keys: [k], token: waiter, ttl: 10_000, queueFor: 30_000 });
    expect((await backend.acquire({ keys: [k], token: holder, ttl: 30_000 })).acquired).toBe(true);
    // Subscribed: the waiter may sleep until the holder's ttl, a release will wake it.
    expect(retryAfterOf(await attempt())).toBeGreaterThan(20_000);

    await raw.client('KILL', 'TYPE', 'pubsub');
    // From the moment the subscription may be gone, waiters come back within half the window.
    await eventually(
      async () => retryAfterOf(await attempt()) <= claimWindow / 2,
      2000,
      'retryAfter capped while the subscription is down',
    );

    // Nobody listens on the waiter's channel, so the release hands the lock to no one (an offer
    // would be lost) and frees it; the waiter, re-checking within half the window, takes it on
    // its next attempt and has lost nothing but its place in the queue.
    expect(await backend.release({ keys: [k], token: holder })).toBe(true);
    expect(await raw.exists(`{${k}}`)).toBe(0);
    expect((await attempt()).acquired).toBe(true);
    expect(woken).toBe(0);
    expect(await raw.hget(`{${k}}`, 'o')).toBe(waiter);

    // ioredis reconnects after 2 s; the backend re-subscribes and trusts wake-ups again: a
    // queued waiter may sleep until the holder's ttl again.
    const next = newToken('next');
    const nextWoken = new Promise<void>((resolve) => {
      const stopNext = backend.onWake(next, () => {
        stopNext();
        resolve();
      });
    });
    await eventually(
      async () =>
        retryAfterOf(
          await backend.acquire({ keys: [k], token: next, ttl: 10_000, queueFor: 30_000 }),
        ) > 5000,
      8000,
      'retryAfter back to the holder ttl once re-subscribed',
    );
    await backend.release({ keys: [k], token: waiter });
    await within(5000, nextWoken, 'wake-up after re-subscribing');
    stop();
  }, 20_000);

  it('times out against a Redis that accepts connections but never answers', async () => {
    const server = await servers.start();
    const backend = resources.backend({
      url: `redis://127.0.0.1:${server.port}`,
      commandTimeout: COMMAND_TIMEOUT,
    });
    expect(
      (await backend.acquire({ keys: [key('a')], token: newToken(), ttl: 5000 })).acquired,
    ).toBe(true);
    process.kill(server.pid, 'SIGSTOP');
    try {
      await expectBackendError(
        backend.acquire({ keys: [key('b')], token: newToken(), ttl: 5000 }),
        /within 500 ms/,
      );
      await expectBackendError(
        backend.extend([{ keys: [key('a')], token: newToken(), ttl: 5000 }]),
      );
    } finally {
      process.kill(server.pid, 'SIGCONT');
    }
  });

  it('bounds a user client whose offline queue is on, and never closes it', async () => {
    const server = await servers.start();
    const client = new Redis(`redis://127.0.0.1:${server.port}`, { maxRetriesPerRequest: null });
    client.on('error', () => undefined);
    try {
      const backend = new RedisLockBackend({ client, commandTimeout: COMMAND_TIMEOUT });
      const token = newToken();
      expect((await backend.acquire({ keys: [key('a')], token, ttl: 5000 })).acquired).toBe(true);
      await server.stop();
      await expectBackendError(backend.acquire({ keys: [key('b')], token: newToken(), ttl: 5000 }));
      await backend.close();
      expect(client.status).not.toBe('end');
    } finally {
      client.disconnect();
    }
  });

  it("names the cause of a user client's failed connection, and the server but not the password", async () => {
    const address = `127.0.0.1:${await freePort()}`;
    const client = new Redis(`redis://:secret@${address}`);
    client.on('error', () => undefined);
    try {
      const backend = new RedisLockBackend({ client, commandTimeout: COMMAND_TIMEOUT });
      expect(backend.endpoint).toBe(address);
      await expectBackendError(backend.ping(), new RegExp(`ECONNREFUSED ${address}`));
      await expectBackendError(
        backend.acquire({ keys: [key('a')], token: newToken(), ttl: 5000 }),
        new RegExp(`ECONNREFUSED ${address}`),
      );
      await backend.close();
    } finally {
      client.disconnect();
    }
  });

  it('names where it connects for every form of options, never credentials', async () => {
    const port = await freePort();
    const lazy = { lazyConnect: true };
    expect(resources.backend({ url: `redis://u:secret@127.0.0.1:${port}/2` }).endpoint).toBe(
      `127.0.0.1:${port}`,
    );
    const options = { host: '127.0.0.1', port, password: 'secret', ...lazy };
    expect(resources.backend({ options }).endpoint).toBe(`127.0.0.1:${port}`);
    expect(resources.backend({ options: { path: '/tmp/none.sock', ...lazy } }).endpoint).toBe(
      '/tmp/none.sock',
    );
    const sentinels = [{ host: '127.0.0.1', port }];
    expect(resources.backend({ options: { sentinels, name: 'm', ...lazy } }).endpoint).toBe(
      `sentinels 127.0.0.1:${port} (master m)`,
    );
    const client = resources.client(`redis://127.0.0.1:${port}`, lazy);
    expect(resources.backend({ client }).endpoint).toBe(`127.0.0.1:${port}`);
  });

  it('{ client }: close() keeps the user client and closes only its own subscriber', async () => {
    const client = resources.client();
    const raw = resources.client();
    const channelPrefix = `wake:${id}:`;
    const backend = new RedisLockBackend({ client, channelPrefix });
    const token = newToken();
    const stop = backend.onWake(token, () => undefined);
    await backend.acquire({ keys: [key('a')], token, ttl: 5000, queueFor: 1000 });
    expect(await wakeChannels(raw, channelPrefix)).toBe(1);
    stop();
    await backend.close();
    await backend.close();
    expect(await client.ping()).toBe('PONG');
    await eventually(
      async () => (await wakeChannels(raw, channelPrefix)) === 0,
      5000,
      'subscriber closed',
    );
    await expectBackendError(backend.acquire({ keys: [key('a')], token, ttl: 5000 }), /closed/);
  });

  it('{ options }: accepts ioredis options (db, credentials) and closes its connections', async () => {
    const url = new URL(redisUrl());
    const backend = new RedisLockBackend({
      options: { host: url.hostname, port: Number(url.port), db: 3 },
    });
    const raw = resources.client(redisUrl(), { db: 3 });
    const token = newToken();
    expect((await backend.acquire({ keys: [key('a')], token, ttl: 5000 })).acquired).toBe(true);
    expect(await raw.hget(`{${key('a')}}`, 'o')).toBe(token);
    expect(await backend.release({ keys: [key('a')], token })).toBe(true);
    await backend.close();
    await expectBackendError(backend.inspect(key('a')), /closed/);
  });

  it('reports auth failures as LockBackendError', async () => {
    const server = await servers.start({ extraArgs: ['--requirepass', 'right-password'] });
    const noPassword = resources.backend({
      url: `redis://127.0.0.1:${server.port}`,
      commandTimeout: COMMAND_TIMEOUT,
    });
    await expectBackendError(
      noPassword.acquire({ keys: [key('a')], token: newToken(), ttl: 1000 }),
    );
    const wrongPassword = resources.backend({
      url: `redis://:wrong@127.0.0.1:${server.port}`,
      commandTimeout: COMMAND_TIMEOUT,
    });
    await expectBackendError(
      wrongPassword.acquire({ keys: [key('a')], token: newToken(), ttl: 1000 }),
    );
    const rightPassword = resources.backend({
      url: `redis://:right-password@127.0.0.1:${server.port}`,
      commandTimeout: COMMAND_TIMEOUT,
    });
    expect(
      (await rightPassword.acquire({ keys: [key('a')], token: newToken(), ttl: 1000 })).acquired,
    ).toBe(true);
  });

  it('reports a read-only replica as LockBackendError, not as busy', async () => {
    const server = await servers.start({
      extraArgs: ['--replicaof', '127.0.0.1', String(await freePort())],
    });
    const backend = resources.backend({
      url: `redis://127.0.0.1:${server.port}`,
      commandTimeout: COMMAND_TIMEOUT,
    });
    await expectBackendError(
      backend.acquire({ keys: [key('a')], token: newToken(), ttl: 1000 }),
      /READONLY/,
    );
  });

  it('reports an out-of-memory Redis as LockBackendError and writes nothing', async () => {
    const server = await servers.start({
      extraArgs: ['--maxmemory', '1', '--maxmemory-policy', 'noeviction'],
    });
    const url = `redis://127.0.0.1:${server.port}`;
    const backend = resources.backend({ url, commandTimeout: COMMAND_TIMEOUT });
    await expectBackendError(
      backend.acquire({ keys: [key('a'), key('b')], token: newToken(), ttl: 1000 }),
      /OOM/,
    );
    const raw = resources.client(url);
    expect(await raw.dbsize()).toBe(0);
  });

  it('rejects missing or invalid options with a clear TypeError', () => {
    const make = (options: unknown) => () =>
      new RedisLockBackend(options as ConstructorParameters<typeof RedisLockBackend>[0]);
    expect(make(undefined)).toThrow(TypeError);
    expect(make(undefined)).toThrow(/url.*client.*options/);
    expect(make({})).toThrow(/pass one of/);
    expect(make({ url: redisUrl(), options: {} })).toThrow(/only one of url, client, options/);
    expect(make({ url: 'http://127.0.0.1:6379' })).toThrow(/redis:\/\/ or rediss:\/\//);
    expect(make({ url: 42 })).toThrow(/url must be a string/);
    expect(make({ client: {} })).toThrow(/client must be an ioredis Redis instance/);
    expect(make({ options: 'redis://x' })).toThrow(/options must be an object/);
    expect(make({ url: redisUrl(), commandTimeout: 0 })).toThrow(/commandTimeout/);
    expect(make({ url: redisUrl(), claimWindow: 2 ** 31 })).toThrow(/claimWindow/);
    expect(make({ url: redisUrl(), claimWindw: 500 })).toThrow(/did you mean "claimWindow"/);
    expect(make({ url: redisUrl(), comandTimeout: 500 })).toThrow(/did you mean "commandTimeout"/);
    expect(make({ options: { hots: '127.0.0.1' } })).toThrow(
      /`options` \(ioredis options\): unknown option "hots"; did you mean "host"/,
    );
    // A name far from every known one may belong to a newer ioredis: passed through.
    const newer = { lazyConnect: true, someFutureIoredisOption: 1 };
    resources.backend({ options: newer });
    // Every option the installed ioredis has a default for is known.
    // (private in ioredis's types, public at run time: where the backend reads the names)
    resources.backend({ options: { ...Redis['defaultOptions'], lazyConnect: true } });
    expect(make({ url: redisUrl(), maxBatchKeys: -1 })).toThrow(/maxBatchKeys/);
    expect(make({ url: redisUrl(), channelPrefix: 7 })).toThrow(/channelPrefix/);
  });
});

/** Channels under `prefix` with a subscriber: a backend's wake channel, found by its public prefix. */
async function wakeChannels(client: Redis, prefix: string): Promise<number> {
  return ((await client.pubsub('CHANNELS', `${prefix}*`)) as unknown[]).length;
}

/** The `retryAfter` of an attempt that must have found the lock busy. */
function retryAfterOf(result: BackendAcquireResult): number {
  expect(result.acquired).toBe(false);
  return result.acquired ? NaN : result.retryAfter;
}
