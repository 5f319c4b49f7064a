import { INestApplication } from '@nestjs/common';
import Redis from 'ioredis';
import {
  Lock,
  LockBackendError,
  LockLostError,
  LockNotAcquiredError,
  LockService,
} from 'nestjs-distributed-lock';
import { RedisLockBackend } from '../../lib/backends/redis';
import type { RedisLockBackendOptions } from '../../lib/backends/redis';
import { lockHashKey } from '../../lib/backends/redis/redis.keys';
import { startSentinelTopology, type SentinelTopology } from '../servers/redis-sentinel.topology';
import { eventually, sleep, timed, within } from '../support/async.helpers';
import { createLockApp } from '../support/test-app';
import { uniqueId, uniqueKey } from '../support/test-ids';

const KEY_PREFIX = 'sentinel-test:';
const COMMAND_TIMEOUT = 1000;
/** How long a failover may take, from freezing the primary to new grants on its successor. */
const FAILOVER_BOUND = 15_000;

/** The Redis key holding the grant of lock key `key`, as the module's backend names it. */
function grantKey(key: string): string {
  return lockHashKey(`${KEY_PREFIX}${key}`);
}

/** `calls` of `cmdstat_<command>` in the node's INFO commandstats (0 when never called). */
async function commandCalls(client: Redis, command: string): Promise<number> {
  const stats = await client.info('commandstats');
  const match = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(stats);
  return match ? Number(match[1]) : 0;
}

/** The acknowledged offset of the node's first replica, from its INFO replication. */
async function replicaAckOffset(primary: Redis): Promise<number> {
  const match = /^slave0:.*offset=(\d+)/m.exec(await primary.info('replication'));
  if (!match) throw new Error('the primary reports no replica');
  return Number(match[1]);
}

/** The lock's loss reason, once its signal aborts. */
function lossOf(lock: Lock): Promise<unknown> {
  return new Promise((resolve) => {
    if (lock.signal.aborted) resolve(lock.signal.reason);
    else lock.signal.addEventListener('abort', () => resolve(lock.signal.reason), { once: true });
  });
}

describe('RedisLockBackend options: the Sentinel form and replicaAcks are checked before any call', () => {
  const sentinels = [{ host: '127.0.0.1', port: 1 }];

  it.each<[string, Record<string, unknown>, string]>([
    ['a typo of name', { sentinels, nmae: 'm' }, 'did you mean "name"?'],
    ['a typo of sentinels', { sentinals: sentinels, name: 'm' }, 'did you mean "sentinels"?'],
    ['a typo in a sentinel', { sentinels: [{ hots: '127.0.0.1' }], name: 'm' }, '"host"?'],
    ['no sentinels', { sentinels: [], name: 'm' }, 'sentinels must be a non-empty array'],
    ['no name', { sentinels }, 'name (the master group name'],
    ['a bad port', { sentinels: [{ host: 'h', port: 0 }], name: 'm' }, 'sentinels[0].port'],
    ['name without sentinels', { url: 'redis://127.0.0.1:1', name: 'm' }, 'Sentinel form'],
    ['two forms', { url: 'redis://127.0.0.1:1', sentinels, name: 'm' }, 'pass only one'],
    [
      'a typo in replicaAcks',
      { sentinels, name: 'm', replicaAcks: { replica: 1, timeout: 100 } },
      'did you mean "replicas"?',
    ],
    [
      'replicaAcks without timeout',
      { sentinels, name: 'm', replicaAcks: { replicas: 1 } },
      'needs both',
    ],
    [
      'zero replicas',
      { sentinels, name: 'm', replicaAcks: { replicas: 0, timeout: 100 } },
      'replicaAcks.replicas must be a positive integer',
    ],
    [
      'a WAIT timeout of 0 (forever)',
      { sentinels, name: 'm', replicaAcks: { replicas: 1, timeout: 0 } },
      'replicaAcks.timeout must be',
    ],
    [
      'a WAIT timeout past commandTimeout',
      {
        url: 'redis://127.0.0.1:1',
        commandTimeout: 500,
        replicaAcks: { replicas: 1, timeout: 500 },
      },
      'less than commandTimeout',
    ],
  ])('rejects %s with a TypeError naming it', (_case, options, message) => {
    expect(() => new RedisLockBackend(options as unknown as RedisLockBackendOptions)).toThrow(
      TypeError,
    );
    expect(() => new RedisLockBackend(options as unknown as RedisLockBackendOptions)).toThrow(
      message,
    );
  });
});

describe('Redis Sentinel: one primary, one replica, three sentinels, on loopback', () => {
  let topology: SentinelTopology;
  const apps: INestApplication[] = [];
  const clients: Redis[] = [];

  beforeAll(async () => {
    topology = await startSentinelTopology();
  }, 60_000);

  afterAll(async () => {
    for (const app of apps.splice(0)) await app.close();
    for (const client of clients.splice(0)) client.disconnect();
    await topology?.stop();
  }, 30_000);

  /** A Nest app whose lock backend is the Sentinel form, plus `extra` options. */
  async function sentinelApp(extra: Record<string, unknown> = {}): Promise<LockService> {
    const { app, locks } = await createLockApp({
      keyPrefix: KEY_PREFIX,
      backend: {
        type: 'redis',
        sentinels: topology.sentinels,
        name: topology.masterName,
        commandTimeout: COMMAND_TIMEOUT,
        ...extra,
      },
    });
    apps.push(app);
    return locks;
  }

  /** A plain client of the data node on `port`. */
  function node(port: number): Redis {
    const client = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    clients.push(client);
    return client;
  }

  it('names the sentinels and the master in endpoint, and answers a ping through them', async () => {
    const backend = new RedisLockBackend({
      sentinels: topology.sentinels,
      name: topology.masterName,
    });
    try {
      const list = topology.sentinels.map((s) => `127.0.0.1:${s.port}`).join(', ');
      expect(backend.endpoint).toBe(`sentinels ${list} (master ${topology.masterName})`);
      await backend.ping();
    } finally {
      await backend.close();
    }
  });

  it('{ sentinels, name }: grants land on the primary the sentinels name, and a waiter is handed the lock', async () => {
    const a = await sentinelApp();
    const b = await sentinelApp();
    const primary = node(await topology.primaryPort());
    const key = uniqueKey('sentinel');

    const first = await a.acquire(key, { ttl: 10_000 });
    expect(await primary.hget(grantKey(key), 'o')).toBe(first.token);
    const waiting = b.acquire(key, { wait: 10_000 });
    await sleep(100);
    await first.release();
    const second = await within(5000, waiting, 'waiter handed the lock');
    expect(second.fencingToken).toBeGreaterThan(first.fencingToken);
    expect(await primary.hget(grantKey(key), 'o')).toBe(second.token);
    await second.release();
    expect(await primary.exists(grantKey(key))).toBe(0);
  });

  it('{ client }: a Sentinel-configured ioredis client works, and the wake-up subscriber follows it to the primary', async () => {
    const user = new Redis({
      sentinels: [...topology.sentinels],
      name: topology.masterName,
      failoverDetector: true,
    });
    user.on('error', () => undefined);
    clients.push(user);
    const channelPrefix = `sentinel-wake:${uniqueId()}:`;
    const { app, locks } = await createLockApp({
      keyPrefix: KEY_PREFIX,
      backend: { type: 'redis', client: user, channelPrefix, commandTimeout: COMMAND_TIMEOUT },
    });
    apps.push(app);
    const other = await sentinelApp();
    const primary = node(await topology.primaryPort());
    const key = uniqueKey('client');

    const holder = await other.acquire(key, { ttl: 10_000 });
    const waiting = locks.acquire(key, { wait: 10_000 });
    // The subscriber is registered on the primary itself, not on a replica or a sentinel.
    await eventually(
      async () => (await primary.pubsub('CHANNELS', `${channelPrefix}*`)).length === 1,
      5000,
      'wake channel on the primary',
    );
    await holder.release();
    const lock = await within(5000, waiting, 'client-form waiter');
    expect(await primary.hget(grantKey(key), 'o')).toBe(lock.token);
    await lock.release();
    await app.close();
    apps.splice(apps.indexOf(app), 1);
    // The module left the user's client open.
    expect(await user.ping()).toBe('PONG');
  });

  it('replicaAcks: each grant and extension is followed by one WAIT, and the replica has the grant when acquire returns', async () => {
    const locks = await sentinelApp({ replicaAcks: { replicas: 1, timeout: 500 } });
    const primaryPort = await topology.primaryPort();
    const primary = node(primaryPort);
    const replica = node(topology.nodes.find((n) => n.port !== primaryPort)?.port ?? 0);
    const key = uniqueKey('acks');
    // Loads the scripts on this primary first: a script's first call there is answered NOSCRIPT
    // and sent again as EVAL, each with its WAIT.
    const warm = await locks.acquire(uniqueKey('acks-warm'), { ttl: 10_000, renew: false });
    await warm.extend(10_000);
    await warm.release();

    const waitsBefore = await commandCalls(primary, 'wait');
    const offsetBefore = Number(
      /^master_repl_offset:(\d+)/m.exec(await primary.info('replication'))?.[1],
    );
    const lock = await locks.acquire(key, { ttl: 10_000, renew: false });
    // The replica acknowledged past the offset at which the grant was written: its periodic ack
    // comes once a second, so without the WAIT this would rarely hold right away.
    expect(await replicaAckOffset(primary)).toBeGreaterThan(offsetBefore);
    expect(await replica.hget(grantKey(key), 'o')).toBe(lock.token);
    expect(await commandCalls(primary, 'wait')).toBe(waitsBefore + 1);
    await lock.extend(20_000);
    expect(await commandCalls(primary, 'wait')).toBe(waitsBefore + 2);
    expect(await replica.pttl(grantKey(key))).toBeGreaterThan(10_000);
    // Release does not wait: a release lost in a failover only keeps the lock until its ttl.
    await lock.release();
    expect(await commandCalls(primary, 'wait')).toBe(waitsBefore + 2);
  });

  it('replicaAcks: with the replica frozen, an acquire fails with LockBackendError in bounded time and leaves no lock behind', async () => {
    const acks = { replicas: 1, timeout: 300 };
    const locks = await sentinelApp({ replicaAcks: acks });
    const plain = await sentinelApp();
    const primaryPort = await topology.primaryPort();
    const primary = node(primaryPort);
    const replicaNode = topology.nodes.find((n) => n.port !== primaryPort);
    if (!replicaNode) throw new Error('no replica in the topology');
    const key = uniqueKey('acks-down');

    process.kill(replicaNode.pid, 'SIGSTOP');
    try {
      const { ms, error } = await timed(locks.acquire(key, { ttl: 10_000 }));
      expect(error).toBeInstanceOf(LockBackendError);
      expect((error as Error).message).toMatch(/0 of the 1 replica\(s\)/);
      expect(ms).toBeLessThan(COMMAND_TIMEOUT + 3000);
      // The engine cancels the unacknowledged grant behind the caller's answer.
      await eventually(
        async () => (await primary.exists(grantKey(key))) === 0,
        5000,
        'unacknowledged grant removed',
      );
      const next = await plain.tryAcquire(key);
      expect(next).not.toBeNull();
      await next?.release();
    } finally {
      process.kill(replicaNode.pid, 'SIGCONT');
    }
    await topology.waitUntilStable(1, 30_000);
  }, 45_000);

  it('fails over: new grants on the new primary, a parked waiter settles, a held lock is renewed there or reported lost', async () => {
    const channelPrefix = `sentinel-wake:${uniqueId()}:`;
    const a = await sentinelApp();
    const b = await sentinelApp({ channelPrefix });
    const oldPort = await topology.primaryPort();
    const oldPrimary = topology.node(oldPort);
    const primary = node(oldPort);
    const ttl = 4000;
    const wait = 10_000;
    const heldKey = uniqueKey('held');
    const busyKey = uniqueKey('busy');

    const held = await a.acquire(heldKey, { ttl });
    // Expires after the failover (about 3 s here), so the waiter's re-check meets the new primary.
    const blocker = await a.acquire(busyKey, { ttl: 6000, renew: false });
    const parkedAt = Date.now();
    const parked = b.acquire(busyKey, { wait }).then(
      (lock) => ({ lock, ms: Date.now() - parkedAt }),
      (error: unknown) => ({ error, ms: Date.now() - parkedAt }),
    );
    // The waiter is parked: its wake-up channel is up on the primary, and its first attempt
    // (sent right after) has had ample time to be queued.
    await eventually(
      async () => (await primary.pubsub('CHANNELS', `${channelPrefix}*`)).length === 1,
      5000,
      'waiter subscribed',
    );
    await sleep(200);
    // Both grants reached the replica before the primary freezes (the test is about the
    // failover, not about a grant lost in it).
    const replica = node(topology.nodes.find((n) => n.port !== oldPort)?.port ?? 0);
    await eventually(
      async () =>
        (await replica.hget(grantKey(heldKey), 'o')) === held.token &&
        (await replica.hget(grantKey(busyKey), 'o')) === blocker.token,
      5000,
      'grants replicated',
    );

    const frozenAt = Date.now();
    process.kill(oldPrimary.pid, 'SIGSTOP');
    try {
      const newPort = await topology.waitForNewPrimary(oldPort, FAILOVER_BOUND);
      expect(newPort).not.toBe(oldPort);
      const newPrimary = node(newPort);

      // New acquisitions succeed on the new primary within the bound.
      const fresh: { lock?: Lock | null } = {};
      const probeKey = uniqueKey('after');
      await eventually(
        async () => {
          fresh.lock = await a.tryAcquire(probeKey).catch((error: unknown) => {
            expect(error).toBeInstanceOf(LockBackendError);
            return null;
          });
          return fresh.lock !== null;
        },
        Math.max(1000, FAILOVER_BOUND - (Date.now() - frozenAt)),
        'a grant after the failover',
      );
      const freshLock = fresh.lock;
      if (!freshLock) throw new Error('no grant after the failover');
      expect(await newPrimary.hget(grantKey(probeKey), 'o')).toBe(freshLock.token);
      await freshLock.release();

      // The waiter parked across the failover gets the lock or a typed error, never hangs.
      const outcome = await within(wait + COMMAND_TIMEOUT + 5000, parked, 'parked waiter');
      expect(outcome.ms).toBeLessThan(wait + COMMAND_TIMEOUT + 3000);
      if ('lock' in outcome) {
        expect(await newPrimary.hget(grantKey(busyKey), 'o')).toBe(outcome.lock.token);
        await outcome.lock.release();
      } else {
        expect(
          outcome.error instanceof LockNotAcquiredError ||
            outcome.error instanceof LockBackendError,
        ).toBe(true);
      }

      // Past the ttl since the freeze, the grant would have expired on the new primary unless a
      // renewal reached it: a lock still held must be the new primary's, else it was reported lost.
      await sleep(Math.max(0, frozenAt + ttl + 1000 - Date.now()));
      if (held.held) {
        expect(await newPrimary.hget(grantKey(heldKey), 'o')).toBe(held.token);
        expect(await newPrimary.pttl(grantKey(heldKey))).toBeGreaterThan(0);
        await held.release();
        expect(await newPrimary.exists(grantKey(heldKey))).toBe(0);
      } else {
        expect(await within(1000, lossOf(held), 'loss reason')).toBeInstanceOf(LockLostError);
        await expect(held.release()).rejects.toBeInstanceOf(LockLostError);
      }
    } finally {
      process.kill(oldPrimary.pid, 'SIGCONT');
    }
    await blocker.release().catch(() => undefined);
  }, 60_000);
});
