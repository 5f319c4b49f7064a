import { INestApplication } from '@nestjs/common';
import { Cluster } from 'ioredis';
import { Lock, LockBackendError, LockService } from 'nestjs-distributed-lock';
import { startRedisCluster, RedisClusterTopology } from '../servers/redis-cluster.topology';
import { eventually, sleep, timed, within } from '../support/async.helpers';
import { createLockApp } from '../support/test-app';
import { uniqueId } from '../support/test-ids';
import {
  closeNodes,
  lockSlot,
  migrateSlot,
  NodeClient,
  nodeClients,
  primaryOfSlot,
  primaryPorts,
} from './redis-cluster-test.helpers';

const KEY_PREFIX = 'cluster-faults:';
/** A holder ttl far above the bounds below: a waiter that missed its wake-up would sleep ~this. */
const HOLDER_TTL = 20_000;
/** How long a failover may take here (node timeout 1 s), from the fault to grants on the successor. */
const FAILOVER_BOUND = 20_000;

/** Where a lock's scripts run: the grant's slot. */
function slotOf(key: string): number {
  return lockSlot(`${KEY_PREFIX}${key}`);
}

/** Whether `lock` was lost (its signal aborted). */
function lost(lock: Lock): boolean {
  return lock.signal.aborted;
}

/**
 * Redis Cluster faults on 3 primaries with one replica each, started once for this file: a slot
 * migrating under a held, contended lock; a manual failover; a primary killed. The tests run in
 * order and each leaves the cluster serving every slot.
 */
describe('RedisLockBackend on Redis Cluster: migration and failover (3 primaries, 3 replicas)', () => {
  let topology: RedisClusterTopology;
  let nodes: NodeClient[];
  const apps: INestApplication[] = [];
  let a: LockService;
  let b: LockService;
  let c: LockService;
  /** A live node, to read the cluster's view from (the first one may be killed below). */
  let observer: NodeClient;

  beforeAll(async () => {
    topology = await startRedisCluster({ primaries: 3, replicasPerPrimary: 1 });
    nodes = nodeClients(topology.nodes.map((n) => n.port));
    observer = nodes[0];
    const services: LockService[] = [];
    for (let i = 0; i < 3; i++) {
      const { app, locks } = await createLockApp({
        backend: { type: 'redis', cluster: [...topology.startupNodes], commandTimeout: 4_000 },
        keyPrefix: KEY_PREFIX,
      });
      apps.push(app);
      services.push(locks);
    }
    [a, b, c] = services;
  }, 120_000);

  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()));
    closeNodes(nodes ?? []);
    await topology?.stop();
  });

  it('starts 3 primaries with one replica each on 127.0.0.1, serving every slot range', async () => {
    expect(topology.startupNodes.every((n) => n.host === '127.0.0.1')).toBe(true);
    expect(new Set(topology.nodes.map((n) => n.pid)).size).toBe(6);
    const admin = new Cluster([...topology.startupNodes]);
    try {
      const keys = ['{a}x', '{b}x', '{c}x'];
      for (const key of keys) await admin.set(key, key);
      expect(await Promise.all(keys.map((k) => admin.get(k)))).toEqual(keys);
    } finally {
      admin.disconnect();
    }
    expect(await primaryPorts(observer.redis)).toHaveLength(3);
  });

  it('keeps a held, contended lock exclusive while its slot migrates; scripts refused meanwhile (TRYAGAIN) go through once it moved, and the waiter is woken on the new primary', async () => {
    // Two keys of one slot: they agree up to their first "}".
    const run = uniqueId();
    const key = `migrate:{${run}}:held`;
    const newcomer = `migrate:{${run}}:fresh`;
    const slot = slotOf(key);
    expect(slotOf(newcomer)).toBe(slot);
    const from = await primaryOfSlot(observer.redis, slot);
    const to = (await primaryPorts(observer.redis)).find((p) => p !== from);
    if (to === undefined) throw new Error('no other primary');
    const source = nodes.find((n) => n.port === from);
    if (!source) throw new Error('no client of the source');
    const refusedBefore = await errorCount(source, 'TRYAGAIN');

    const holder = await a.acquire(key, { ttl: HOLDER_TTL });
    const waiting = timed(b.acquire(key, { ttl: HOLDER_TTL, wait: 30_000 }));
    await sleep(200);
    // While the slot is MIGRATING, a script whose keys are not all on the source is refused
    // (TRYAGAIN): the newcomer's, whose keys do not exist yet. It is sent again within its
    // commandTimeout, and granted once the slot has moved.
    let during: Promise<{ ms: number; value?: Lock | null; error?: unknown }> | undefined;
    await migrateSlot(nodes, slot, to, async () => {
      during = timed(c.tryAcquire(newcomer));
      // Longer than ioredis's own TRYAGAIN retries (16 redirections, about 1 s at most), well
      // within the backend's commandTimeout.
      await sleep(1_500);
    });
    if (!during) throw new Error('the migration did not run its window');
    const tried = await during;
    expect(tried.error).toBeUndefined();
    expect(tried.value).toEqual(expect.objectContaining({ keys: [newcomer] }));
    expect(await errorCount(source, 'TRYAGAIN')).toBeGreaterThan(refusedBefore);
    await tried.value?.release();
    expect(await primaryOfSlot(observer.redis, slot)).toBe(to);
    // The holder still holds the lock, on its new node.
    expect(await c.tryAcquire(key)).toBeNull();
    expect(lost(holder)).toBe(false);

    await holder.release();
    const { ms, value: next, error } = await waiting;
    expect(error).toBeUndefined();
    if (!next) throw new Error('the waiter got nothing');
    expect(next.fencingToken).toBeGreaterThan(holder.fencingToken);
    // Woken by the release: without the re-subscription on the new primary the waiter would be
    // skipped as dead there and re-check only near the holder's 20 s ttl.
    expect(ms).toBeLessThan(200 + 1_500 + 10_000);
    await next.release();
  }, 60_000);

  it('keeps a renewed lock across a manual failover of its primary; a waiter is served after it, with a greater fencing token', async () => {
    const key = `failover:${uniqueId()}`;
    const slot = slotOf(key);
    const primary = await primaryOfSlot(observer.redis, slot);
    const replica = await replicaOf(primary);
    // A manual failover pauses writes on the old primary for a few seconds (4 s seen here):
    // the ttl outlasts that, and the wait after it outlasts the ttl, so only renewals that
    // reached the promoted replica keep the lock.
    const holder = await a.acquire(key, { ttl: 8_000 });
    const waiting = timed(b.acquire(key, { ttl: HOLDER_TTL, wait: 40_000 }));
    await sleep(200);
    await replica.redis.call('cluster', 'failover');
    await eventually(
      async () => (await primaryOfSlot(replica.redis, slot)) === replica.port,
      FAILOVER_BOUND,
      'the replica serves the slot',
    );
    await sleep(9_000);
    expect(holder.signal.reason).toBeUndefined();
    expect(lost(holder)).toBe(false);
    expect(await c.isLocked(key)).toBe(true);
    await holder.release();
    const { value: next, error } = await waiting;
    expect(error).toBeUndefined();
    if (!next) throw new Error('the waiter got nothing');
    expect(next.fencingToken).toBeGreaterThan(holder.fencingToken);
    await next.release();
  }, 60_000);

  it('survives SIGKILL of a primary holding a replicated lock: no second holder, waiters are served or fail typed in bounded time, then grants resume', async () => {
    const key = `kill:${uniqueId()}`;
    const slot = slotOf(key);
    const primary = await primaryOfSlot(observer.redis, slot);
    const replica = await replicaOf(primary);
    const holder = await a.acquire(key, { ttl: 15_000 });
    // Replicated before the fault: the grant survives it (an unreplicated one could be lost).
    const victim = nodes.find((n) => n.port === primary);
    if (!victim) throw new Error('no client of the primary');
    expect(await victim.redis.call('wait', 1, 2_000)).toBe(1);
    observer = nodes.find((n) => n.port !== primary) ?? observer;

    const waiting = timed(b.acquire(key, { ttl: HOLDER_TTL, wait: 8_000 }));
    const server = topology.nodes.find((n) => n.port === primary);
    if (!server) throw new Error('no server process');
    process.kill(server.pid, 'SIGKILL');
    await eventually(
      async () => (await primaryOfSlot(replica.redis, slot)) === replica.port,
      FAILOVER_BOUND,
      'the replica was promoted',
    );
    // The holder's grant moved with the slot: nobody else may take it.
    expect(await c.tryAcquire(key)).toBeNull();
    const waited = await within(8_000 + 2_000 + 5_000, waiting, 'the waiter settles');
    if (waited.value) {
      // Served only if the holder lost the lock first.
      expect(lost(holder)).toBe(true);
      await waited.value.release();
    } else {
      // Out of wait while the lock was held, or a typed error while its node was down.
      expect(waited.error).toEqual(expect.objectContaining({ name: expect.any(String) }));
      expect(
        waited.error instanceof LockBackendError || String(waited.error).includes('not acquired'),
      ).toBe(true);
    }
    if (!lost(holder)) await holder.release();
    const next = await within(10_000, c.acquire(key, { wait: 5_000 }), 'a grant after failover');
    expect(next.fencingToken).toBeGreaterThan(holder.fencingToken);
    await next.release();
  }, 90_000);

  /** How many errors with this prefix the node answered, from INFO errorstats. */
  async function errorCount(node: NodeClient, prefix: string): Promise<number> {
    const stats = await node.redis.info('errorstats');
    const match = new RegExp(`^errorstat_${prefix}:count=(\\d+)`, 'm').exec(stats);
    return match ? Number(match[1]) : 0;
  }

  /** The replica of the primary on `port`, from CLUSTER REPLICAS. */
  async function replicaOf(port: number): Promise<NodeClient> {
    const primary = nodes.find((n) => n.port === port);
    if (!primary) throw new Error(`no node ${port}`);
    const id = (await primary.redis.call('cluster', 'myid')) as string;
    const lines = (await primary.redis.call('cluster', 'replicas', id)) as string[];
    const replicaPort = Number(/127\.0\.0\.1:(\d+)@/.exec(lines[0] ?? '')?.[1]);
    const replica = nodes.find((n) => n.port === replicaPort);
    if (!replica) throw new Error(`no replica of ${port}`);
    return replica;
  }
});
