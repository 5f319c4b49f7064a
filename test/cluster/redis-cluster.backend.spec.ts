import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { INestApplication } from '@nestjs/common';
import { Cluster } from 'ioredis';
import { LockService } from 'nestjs-distributed-lock';
import { RedisLockBackend } from '../../lib/backends/redis';
import type { RedisLockBackendOptions } from '../../lib/backends/redis';
import { keySlot } from '../../lib/backends/redis/redis.keys';
import { startRedisCluster, RedisClusterTopology } from '../servers/redis-cluster.topology';
import { eventually, sleep, timed } from '../support/async.helpers';
import { createLockApp } from '../support/test-app';
import { newToken, uniqueId } from '../support/test-ids';
import {
  closeNodes,
  lockSlot,
  migrateSlot,
  NodeClient,
  nodeClients,
  primaryOfSlot,
  scriptCalls,
} from './redis-cluster-test.helpers';

const KEY_PREFIX = 'cluster-test:';
/** A holder ttl far above the bounds below: a waiter that missed its wake-up would sleep ~this. */
const HOLDER_TTL = 20_000;

/** Keys (without the module's prefix) whose locks fall on every primary, one per primary. */
async function keysOnEveryPrimary(
  node: NodeClient,
  primaries: readonly number[],
  label: string,
): Promise<Map<number, string>> {
  const found = new Map<number, string>();
  for (let i = 0; i < 200 && found.size < primaries.length; i++) {
    const key = `${label}:${i}`;
    const port = await primaryOfSlot(node.redis, lockSlot(`${KEY_PREFIX}${key}`));
    if (!found.has(port)) found.set(port, key);
  }
  if (found.size !== primaries.length) throw new Error('no key found for some primary');
  return found;
}

describe('RedisLockBackend on Redis Cluster (3 primaries)', () => {
  let topology: RedisClusterTopology;
  let nodes: NodeClient[];
  let primaries: number[];
  const apps: INestApplication[] = [];
  let a: LockService;
  let b: LockService;
  const options = (): RedisLockBackendOptions => ({ cluster: [...topology.startupNodes] });

  /** Shard channels subscribed on the node at `port` whose hash slot is `slot`. */
  async function shardChannelsOf(port: number, slot: number): Promise<string[]> {
    const node = nodes.find((n) => n.port === port);
    if (!node) throw new Error(`no node ${port}`);
    const all = (await node.redis.call('pubsub', 'shardchannels', '*')) as string[];
    return all.filter((c) => keySlot(c) === slot);
  }

  beforeAll(async () => {
    // A long node timeout: a primary frozen below stays a member (no failover, no CLUSTERDOWN).
    topology = await startRedisCluster({ primaries: 3, nodeTimeoutMs: 20_000 });
    nodes = nodeClients(topology.nodes.map((n) => n.port));
    primaries = topology.nodes.map((n) => n.port).sort();
    for (const target of ['a', 'b']) {
      const { app, locks } = await createLockApp({
        backend: { type: 'redis', ...options() },
        keyPrefix: KEY_PREFIX,
      });
      apps.push(app);
      if (target === 'a') a = locks;
      else b = locks;
    }
  }, 90_000);

  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()));
    closeNodes(nodes ?? []);
    await topology?.stop();
  });

  it('grants, hands over and releases locks on every primary; the waiter, in another instance, is woken at once', async () => {
    const keys = await keysOnEveryPrimary(nodes[0], primaries, `handoff:${uniqueId()}`);
    expect([...keys.keys()].sort()).toEqual(primaries);
    for (const [port, key] of keys) {
      const holder = await a.acquire(key, { ttl: HOLDER_TTL });
      const waiting = timed(b.acquire(key, { ttl: HOLDER_TTL, wait: 15_000 }));
      await sleep(150);
      expect(await a.isLocked(key)).toBe(true);
      await holder.release();
      const { ms, value: next, error } = await waiting;
      expect(error).toBeUndefined();
      if (!next) throw new Error(`no grant on ${port}`);
      // Without the wake-up the waiter would re-check only near the holder's ttl (20 s).
      expect(ms).toBeLessThan(150 + 5_000);
      expect(next.fencingToken).toBeGreaterThan(holder.fencingToken);
      await next.release();
      expect(await b.isLocked(key)).toBe(false);
    }
  });

  it('subscribes wake-ups per slot waited in, on the primary of that slot', async () => {
    const keys = await keysOnEveryPrimary(nodes[0], primaries, `channels:${uniqueId()}`);
    const held = await Promise.all(
      [...keys.values()].map((k) => a.acquire(k, { ttl: HOLDER_TTL })),
    );
    const waits = [...keys.values()].map((k) => b.acquire(k, { wait: 15_000 }));
    await sleep(300);
    for (const [port, key] of keys) {
      const node = nodes.find((n) => n.port === port);
      if (!node) throw new Error(`no node ${port}`);
      const channels = (await node.redis.call(
        'pubsub',
        'shardchannels',
        'distributed-lock:wake:*',
      )) as string[];
      // Every channel subscribed here hashes to a slot this node serves (SPUBLISH from a script
      // on it reaches it); the waiter's instance has the channel of this key's slot among them.
      expect(channels.length).toBeGreaterThanOrEqual(1);
      for (const channel of channels) {
        expect(await primaryOfSlot(node.redis, keySlot(channel))).toBe(port);
      }
      expect(channels.map((c) => keySlot(c))).toContain(lockSlot(`${KEY_PREFIX}${key}`));
    }
    await Promise.all(held.map((l) => l.release()));
    await Promise.all((await Promise.all(waits)).map((l) => l.release()));
  });

  it('renews locks of several slots in one call per slot, on each slot’s primary, never across slots', async () => {
    const backend = new RedisLockBackend(options());
    try {
      const run = uniqueId();
      // Two locks share a slot (a common hash tag), the others each have their own.
      const keys = [
        `r:{${run}}:1`,
        `r:{${run}}:2`,
        ...Array.from({ length: 6 }, (_, i) => `r:${run}:${i}`),
      ];
      const requests = keys.map((key) => ({ keys: [key], token: newToken('renew'), ttl: 5_000 }));
      for (const request of requests) {
        expect((await backend.acquire(request)).acquired).toBe(true);
      }
      const slotsByPrimary = new Map<number, Set<number>>();
      for (const key of keys) {
        const slot = lockSlot(key);
        const port = await primaryOfSlot(nodes[0].redis, slot);
        slotsByPrimary.set(port, (slotsByPrimary.get(port) ?? new Set()).add(slot));
      }
      expect(slotsByPrimary.size).toBeGreaterThanOrEqual(2);
      // Loads the extend script on every primary first: its first call on a node is answered
      // NOSCRIPT and sent again as EVAL.
      expect(await backend.extend(requests)).toEqual(keys.map(() => true));
      const before = await Promise.all(nodes.map((n) => scriptCalls(n.redis)));
      const extended = await backend.extend(requests.map((r) => ({ ...r, ttl: 60_000 })));
      const after = await Promise.all(nodes.map((n) => scriptCalls(n.redis)));
      expect(extended).toEqual(keys.map(() => true));
      nodes.forEach((node, i) => {
        expect({ port: node.port, calls: after[i] - before[i] }).toEqual({
          port: node.port,
          calls: slotsByPrimary.get(node.port)?.size ?? 0,
        });
      });
      for (const key of keys) {
        const info = await backend.inspect(key);
        expect(info.ttl).toBeGreaterThan(30_000);
      }
      await Promise.all(requests.map((r) => backend.release(r)));
    } finally {
      await backend.close();
    }
  });

  it('refuses a multi-key lock across slots with a TypeError naming the fix, before sending anything; keys sharing a hash tag lock together', async () => {
    const run = uniqueId();
    const spread = [`order:${run}:items`, `order:${run}:payment`];
    expect(lockSlot(`${KEY_PREFIX}${spread[0]}`)).not.toBe(lockSlot(`${KEY_PREFIX}${spread[1]}`));
    const before = await Promise.all(nodes.map((n) => scriptCalls(n.redis)));
    const refused = a.acquire(spread, { wait: 0 });
    await expect(refused).rejects.toThrow(TypeError);
    await expect(refused).rejects.toThrow(/must share a hash slot.*order:\{42\}:items/);
    expect(await Promise.all(nodes.map((n) => scriptCalls(n.redis)))).toEqual(before);

    const tagged = [`order:{${run}}:items`, `order:{${run}}:payment`];
    const lock = await a.acquire(tagged);
    expect(lock.fencingTokens).toHaveLength(2);
    expect(lock.fencingTokens[0]).toBe(lock.fencingTokens[1]);
    expect(await b.isLocked(tagged[1])).toBe(true);
    await lock.release();
    expect(await b.isLocked(tagged[0])).toBe(false);
  });

  it('refuses a key whose Redis keys would have an empty hash tag, before sending anything', async () => {
    const backend = new RedisLockBackend(options());
    try {
      await expect(
        backend.acquire({ keys: ['}x'], token: newToken('t'), ttl: 1000 }),
      ).rejects.toThrow(/starts with "}"/);
    } finally {
      await backend.close();
    }
  });

  it('refuses a user’s Cluster client with an ioredis keyPrefix, and names URL startup nodes without their credentials', () => {
    const prefixed = new Cluster([...topology.startupNodes], {
      keyPrefix: 'app:',
      lazyConnect: true,
    });
    const withUrl = new Cluster(['redis://admin:s3cret@127.0.0.1:1'], { lazyConnect: true });
    try {
      expect(() => new RedisLockBackend({ client: prefixed })).toThrow(
        /keyPrefix is not supported/,
      );
      const backend = new RedisLockBackend({ client: withUrl });
      expect(backend.endpoint).toBe('cluster 127.0.0.1:1');
    } finally {
      prefixed.disconnect();
      withUrl.disconnect();
    }
  });

  it('takes a Cluster client the user owns, names its nodes, and leaves it open on close', async () => {
    const client = new Cluster([...topology.startupNodes]);
    try {
      const backend = new RedisLockBackend({ client });
      expect(backend.endpoint).toMatch(/^cluster 127\.0\.0\.1:\d+/);
      const key = `own:${uniqueId()}`;
      const request = { keys: [key], token: newToken('own'), ttl: 5_000 };
      expect((await backend.acquire(request)).acquired).toBe(true);
      expect(await backend.release(request)).toBe(true);
      await backend.close();
      expect(await client.ping()).toBe('PONG');
    } finally {
      client.disconnect();
    }
  });

  it('keeps renewing the locks of healthy primaries while another primary is frozen; only the frozen one’s locks run out', async () => {
    const keys = await keysOnEveryPrimary(nodes[0], primaries, `frozen:${uniqueId()}`);
    const [frozenPort, frozenKey] = [...keys][0];
    const healthy = [...keys].slice(1);
    const { app, locks } = await createLockApp({
      backend: { type: 'redis', ...options(), commandTimeout: 1_000 },
      keyPrefix: KEY_PREFIX,
    });
    const server = topology.nodes.find((n) => n.port === frozenPort);
    if (!server) throw new Error('no server process');
    try {
      const onFrozen = await locks.acquire(frozenKey, { ttl: 3_000 });
      const onHealthy = await Promise.all(healthy.map(([, k]) => locks.acquire(k, { ttl: 3_000 })));
      const backend = new RedisLockBackend({ ...options(), commandTimeout: 1_000 });
      try {
        const others = await keysOnEveryPrimary(nodes[0], primaries, `direct:${uniqueId()}`);
        const healthyPort = healthy[0][0];
        const direct = [others.get(frozenPort), others.get(healthyPort)].map((key) => ({
          keys: [`${KEY_PREFIX}${key}`],
          token: newToken('direct'),
          ttl: 10_000,
        }));
        for (const request of direct) expect((await backend.acquire(request)).acquired).toBe(true);
        process.kill(server.pid, 'SIGSTOP');
        // One slot's call fails; the other's answer still counts.
        const [frozenResult, healthyResult] = await backend.extend(direct);
        expect(frozenResult).toBeInstanceOf(Error);
        expect(healthyResult).toBe(true);
        // Longer than the ttl: renewals must have reached the healthy primaries.
        await sleep(4_500);
        expect(onHealthy.map((l) => l.signal.reason)).toEqual(onHealthy.map(() => undefined));
        expect(onFrozen.signal.aborted).toBe(true);
      } finally {
        process.kill(server.pid, 'SIGCONT');
        await backend.close();
      }
      await Promise.all(onHealthy.map((l) => l.release()));
    } finally {
      process.kill(server.pid, 'SIGCONT');
      await app.close();
    }
  }, 30_000);

  it('after a waiter’s slot migrates, the waiter is told to re-check, its slot is live again on the new primary, and the handoff there wakes it', async () => {
    const h = new RedisLockBackend(options());
    const w = new RedisLockBackend(options());
    try {
      const key = `heal:${uniqueId()}`;
      const slot = lockSlot(key);
      const holder = { keys: [key], token: newToken('h'), ttl: HOLDER_TTL };
      expect((await h.acquire(holder)).acquired).toBe(true);
      const token = newToken('w');
      let woken = 0;
      const off = w.onWake(token, () => void woken++);
      let attempt = 1;
      const waitOnce = () =>
        w.acquire({ keys: [key], token, ttl: 5_000, queueFor: 60_000, attempt: attempt++ });
      const first = await waitOnce();
      // Live: the waiter may sleep until the holder's ttl, a wake-up will come.
      expect(first).toEqual({ acquired: false, retryAfter: expect.any(Number) });
      expect(first.acquired ? 0 : first.retryAfter).toBeGreaterThan(1_000);
      const from = await primaryOfSlot(nodes[0].redis, slot);
      const to = primaries.find((p) => p !== from);
      if (to === undefined) throw new Error('no other primary');
      await migrateSlot(nodes, slot, to);
      // Once the move is noticed (the old owner's sunsubscribe push, or the slot map refresh),
      // the waiter is told to re-check, with no release: a full retryAfter it was given before
      // would make it miss a handoff on the new primary.
      await eventually(() => woken > 0, 5_000, 'the waiter is told to re-check after the move');
      const wokenByMove = woken;
      await eventually(
        async () => {
          const r = await waitOnce();
          const here = await shardChannelsOf(to, slot);
          // Only w waits in this slot: a channel of it there is w's.
          return !r.acquired && r.retryAfter > 1_000 && here.length === 1;
        },
        10_000,
        'the slot is live again, subscribed on its new primary',
      );
      expect(await h.release(holder)).toBe(true);
      await eventually(() => woken > wokenByMove, 5_000, 'the waiter is woken by the release');
      off();
    } finally {
      await h.close();
      await w.close();
    }
  }, 30_000);

  it('queues the first waiter of a slot that just moved, without waiting out a lost SSUBSCRIBE reply', async () => {
    const key = `first-moved:${uniqueId()}`;
    const slot = lockSlot(`${KEY_PREFIX}${key}`);
    const from = await primaryOfSlot(nodes[0].redis, slot);
    const to = primaries.find((p) => p !== from);
    if (to === undefined) throw new Error('no other primary');
    // b has subscribed in other slots before (earlier tests): its slot map is stale right now.
    await migrateSlot(nodes, slot, to);
    const holder = await a.acquire(key, { ttl: HOLDER_TTL });
    const waiting = timed(b.acquire(key, { ttl: HOLDER_TTL, wait: 15_000 }));
    await sleep(300);
    await holder.release();
    const { value: next, error, ms } = await waiting;
    expect(error).toBeUndefined();
    if (!next) throw new Error('no grant');
    expect(ms).toBeLessThan(300 + 5_000);
    await next.release();
  }, 30_000);

  it('lets a reentrant call take keys of several slots together when it already holds all but one slot’s', async () => {
    const [k1, k2] = [`re:${uniqueId()}:a`, `re:${uniqueId()}:b`];
    expect(lockSlot(`${KEY_PREFIX}${k1}`)).not.toBe(lockSlot(`${KEY_PREFIX}${k2}`));
    const result = await a.withLock(k1, () =>
      a.withLock(k2, () => a.withLock([k1, k2], async (both) => both.keys)),
    );
    expect(result).toEqual([k1, k2].sort());
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['an empty node list', { cluster: [] }, /cluster must be a non-empty array/],
    ['a bad node port', { cluster: [{ host: '127.0.0.1', port: 0 }] }, /cluster\[0\]\.port/],
    ['a typo in a node', { cluster: [{ hots: '127.0.0.1' }] }, /"host"\?/],
    [
      'replicaAcks',
      { cluster: [{ host: 'h' }], replicaAcks: { replicas: 1, timeout: 10 } },
      /replicaAcks is not available on Redis Cluster/,
    ],
    [
      'a channelPrefix with a brace',
      { cluster: [{ host: 'h' }], channelPrefix: 'x{' },
      /channelPrefix must not contain/,
    ],
    [
      'clusterOptions without cluster',
      { url: 'redis://127.0.0.1:1', clusterOptions: {} },
      /clusterOptions belongs to the Cluster form/,
    ],
    ['two forms', { url: 'redis://127.0.0.1:1', cluster: [{ host: 'h' }] }, /pass only one of/],
    [
      'an ioredis keyPrefix',
      { cluster: [{ host: 'h' }], clusterOptions: { keyPrefix: 'app:' } },
      /keyPrefix is not supported on Redis Cluster.*module option keyPrefix/,
    ],
    [
      'an ioredis keyPrefix of the nodes',
      { cluster: [{ host: 'h' }], clusterOptions: { redisOptions: { keyPrefix: 'app:' } } },
      /keyPrefix is not supported on Redis Cluster/,
    ],
    [
      'a typo in clusterOptions',
      { cluster: [{ host: 'h' }], clusterOptions: { slotsRefreshIntervall: 1 } },
      /did you mean "slotsRefreshInterval"\?/,
    ],
    [
      'a typo in clusterOptions.redisOptions',
      { cluster: [{ host: 'h' }], clusterOptions: { redisOptions: { passwrod: 'x' } } },
      /did you mean "password"\?/,
    ],
  ])('refuses %s before any call', (_, given, message) => {
    expect(() => new RedisLockBackend(given as unknown as RedisLockBackendOptions)).toThrow(
      message,
    );
  });
  it('lets a process exit once its backend closed, even with a slot-map refresh in flight (ioredis would re-arm its refresh timer for good)', async () => {
    const child = spawn(
      process.execPath,
      [
        '-r',
        join(__dirname, '..', 'faults', 'runtime', 'typescript.register.js'),
        join(__dirname, 'redis-cluster-close.child.ts'),
        JSON.stringify(topology.startupNodes),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const exited = new Promise<number | null>((resolve) =>
      child.once('exit', (code) => resolve(code)),
    );
    let output = '';
    const said = (line: string): Promise<void> =>
      eventually(() => output.includes(line), 20_000, `the child says ${line} (output: ${output})`);
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const pids = topology.nodes.map((n) => n.pid);
    try {
      await said('ready');
      for (const pid of pids) process.kill(pid, 'SIGSTOP');
      child.kill('SIGUSR2');
      await said('closed');
    } finally {
      for (const pid of pids) process.kill(pid, 'SIGCONT');
    }
    // Nothing of the backend is left to keep it alive: it exits on its own, well within this.
    const code = await Promise.race([exited, sleep(10_000).then(() => 'still running' as const)]);
    if (code === 'still running') child.kill('SIGKILL');
    expect(code).toBe(0);
  }, 60_000);
});
