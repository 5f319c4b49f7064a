import { INestApplication } from '@nestjs/common';
import { Cluster } from 'ioredis';
import { LockService } from 'nestjs-distributed-lock';
import { RedisLockBackend } from '../../lib/backends/redis';
import type { RedisLockBackendOptions } from '../../lib/backends/redis';
import { keySlot } from '../../lib/backends/redis/redis.keys';
import { startRedisCluster, RedisClusterTopology } from '../servers/redis-cluster.topology';
import { sleep, timed } from '../support/async.helpers';
import { createLockApp } from '../support/test-app';
import { newToken, uniqueId } from '../support/test-ids';
import {
  closeNodes,
  lockSlot,
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

  beforeAll(async () => {
    topology = await startRedisCluster({ primaries: 3 });
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
  ])('refuses %s before any call', (_, given, message) => {
    expect(() => new RedisLockBackend(given as unknown as RedisLockBackendOptions)).toThrow(
      message,
    );
  });
});
