import Redis, { Cluster } from 'ioredis';
import { keySlot, lockHashKey } from '../../lib/backends/redis/redis.keys';
import { eventually } from '../support/async.helpers';

/** One node of a test cluster, reached directly (no redirections). */
export interface NodeClient {
  readonly port: number;
  readonly redis: Redis;
}

/** Direct clients of every node, closed by {@link closeNodes}. */
export function nodeClients(ports: readonly number[]): NodeClient[] {
  return ports.map((port) => ({
    port,
    redis: new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1 }),
  }));
}

/** Closes what {@link nodeClients} opened. */
export function closeNodes(nodes: readonly NodeClient[]): void {
  for (const node of nodes) node.redis.disconnect();
}

/** The slot of the grant of lock key `key` (final, prefixed), where every script of the lock runs. */
export function lockSlot(key: string): number {
  return keySlot(lockHashKey(key));
}

/** Port of the primary that serves `slot` now, from CLUSTER SHARDS of a live node. */
export async function primaryOfSlot(node: Redis, slot: number): Promise<number> {
  const reply = (await node.call('cluster', 'slots')) as [number, number, [string, number]][];
  const range = reply.find(([from, to]) => slot >= from && slot <= to);
  if (!range) throw new Error(`no node serves slot ${slot}`);
  return range[2][1];
}

/** Ports of the cluster's primaries, from CLUSTER SLOTS of a live node. */
export async function primaryPorts(node: Redis): Promise<number[]> {
  const reply = (await node.call('cluster', 'slots')) as [number, number, [string, number]][];
  return [...new Set(reply.map((range) => range[2][1]))].sort();
}

/** `calls` of `cmdstat_<command>` in the node's INFO commandstats (0 when never called). */
export async function commandCalls(node: Redis, command: string): Promise<number> {
  const stats = await node.info('commandstats');
  const match = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(stats);
  return match ? Number(match[1]) : 0;
}

/** Script calls (EVALSHA + EVAL) the node has run so far. */
export async function scriptCalls(node: Redis): Promise<number> {
  return (await commandCalls(node, 'evalsha')) + (await commandCalls(node, 'eval'));
}

/**
 * Moves `slot` from its primary to the primary on port `to`, keys included, with the steps
 * `redis-cli --cluster reshard` takes: IMPORTING on the target, MIGRATING on the source, MIGRATE
 * of its keys, then SETSLOT NODE on target, source and the other primaries. `between` runs after
 * MIGRATING is set and before any key moves (the window in which Redis answers TRYAGAIN to
 * multi-key scripts of the slot).
 */
export async function migrateSlot(
  nodes: readonly NodeClient[],
  slot: number,
  to: number,
  between: () => Promise<void> = async () => undefined,
): Promise<void> {
  const byPort = (port: number): Redis => {
    const node = nodes.find((n) => n.port === port);
    if (!node) throw new Error(`no client for node ${port}`);
    return node.redis;
  };
  const from = await primaryOfSlot(nodes[0].redis, slot);
  if (from === to) throw new Error(`slot ${slot} is already on ${to}`);
  const [source, target] = [byPort(from), byPort(to)];
  const [sourceId, targetId] = await Promise.all(
    [source, target].map((n) => n.call('cluster', 'myid') as Promise<string>),
  );
  await target.call('cluster', 'setslot', slot, 'importing', sourceId);
  await source.call('cluster', 'setslot', slot, 'migrating', targetId);
  await between();
  for (let round = 0; round < 100; round++) {
    const keys = (await source.call('cluster', 'getkeysinslot', slot, 100)) as string[];
    if (keys.length === 0) break;
    await source.call('migrate', '127.0.0.1', to, '', 0, 5000, 'keys', ...keys);
  }
  await target.call('cluster', 'setslot', slot, 'node', targetId);
  await source.call('cluster', 'setslot', slot, 'node', targetId);
  for (const port of await primaryPorts(target)) {
    if (port !== from && port !== to)
      await byPort(port).call('cluster', 'setslot', slot, 'node', targetId);
  }
  await eventually(
    async () => (await primaryOfSlot(source, slot)) === to,
    10_000,
    `slot ${slot} served by ${to}`,
  );
}

/** A Cluster client for the test's own checks (not the backend's), closed by the caller. */
export function adminCluster(ports: readonly number[]): Cluster {
  return new Cluster(
    ports.map((port) => ({ host: '127.0.0.1', port })),
    { redisOptions: { maxRetriesPerRequest: 1 } },
  );
}
