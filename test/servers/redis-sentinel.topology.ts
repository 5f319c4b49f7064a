import Redis from 'ioredis';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep } from '../support/async.helpers';
import { startRedis } from './redis.server';
import {
  ensureBinary,
  freePort,
  removeDir,
  startServer,
  stopPid,
  type ServerProcess,
} from './server.process';

/** Master group name the sentinels monitor. */
export const SENTINEL_MASTER_NAME = 'ndl-primary';

/** How long, in ms, a primary may be silent before the sentinels call it down. */
export const DOWN_AFTER_MS = 1000;
const FAILOVER_TIMEOUT_MS = 3000;
const SENTINEL_COUNT = 3;
const QUORUM = 2;

/** One primary, one replica and three sentinels, all on 127.0.0.1, all started by this process. */
export interface SentinelTopology {
  /** Addresses of the sentinels, as a client is configured with them. */
  readonly sentinels: readonly { readonly host: string; readonly port: number }[];
  readonly masterName: string;
  /** The data nodes, primary first as started; a failover swaps their roles, not this order. */
  readonly nodes: readonly ServerProcess[];
  /** The sentinel processes, for callers that must stop or reap everything it started. */
  readonly sentinelProcesses: readonly ServerProcess[];
  /** Port of the primary the sentinels report now (asking each until one answers). */
  primaryPort(): Promise<number>;
  /** The data node on `port`. */
  node(port: number): ServerProcess;
  /**
   * Resolves once every sentinel reports a primary other than `oldPort`, that node says it is a
   * master, and returns its port.
   */
  waitForNewPrimary(oldPort: number, timeoutMs: number): Promise<number>;
  /** Resolves once the sentinels agree on one primary and it has `replicas` synced replicas. */
  waitUntilStable(replicas: number, timeoutMs: number): Promise<number>;
  /** Thaws and stops every process it started, by PID, and removes their dirs. */
  stop(): Promise<void>;
}

/** A short-lived client to 127.0.0.1:`port` that fails fast instead of retrying. */
function probe(port: number): Redis {
  const client = new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 500,
    commandTimeout: 500,
    enableOfflineQueue: false,
  });
  client.on('error', () => undefined);
  return client;
}

/** Runs `fn` on a fresh probe connection; undefined when the node does not answer. */
async function ask<T>(port: number, fn: (client: Redis) => Promise<T>): Promise<T | undefined> {
  const client = probe(port);
  try {
    await client.connect();
    return await fn(client);
  } catch {
    return undefined;
  } finally {
    client.disconnect();
  }
}

/** `INFO replication` of the node on `port` as a map, or undefined when it does not answer. */
async function replicationInfo(port: number): Promise<Map<string, string> | undefined> {
  const text = await ask(port, (c) => c.info('replication'));
  if (text === undefined) return undefined;
  const fields = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return fields;
}

/** Polls `check` every 100 ms until it yields a value; bounded by `timeoutMs` and 1000 rounds. */
async function poll<T>(
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  label: string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let round = 0; round < 1000 && Date.now() < deadline; round++) {
    const value = await check();
    if (value !== undefined) return value;
    await sleep(100);
  }
  throw new Error(`sentinel topology: ${label} not reached within ${timeoutMs} ms`);
}

async function startSentinel(primaryPort: number): Promise<ServerProcess> {
  const binary = ensureBinary('redis-sentinel', 'redis-sentinel');
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'ndl-sentinel-'));
  const config = join(dir, 'sentinel.conf');
  // Sentinel rewrites its config file as it learns the topology, hence one writable file each.
  writeFileSync(
    config,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      'protected-mode yes',
      'daemonize no',
      `dir ${dir}`,
      `sentinel monitor ${SENTINEL_MASTER_NAME} 127.0.0.1 ${primaryPort} ${QUORUM}`,
      `sentinel down-after-milliseconds ${SENTINEL_MASTER_NAME} ${DOWN_AFTER_MS}`,
      `sentinel failover-timeout ${SENTINEL_MASTER_NAME} ${FAILOVER_TIMEOUT_MS}`,
      `sentinel parallel-syncs ${SENTINEL_MASTER_NAME} 1`,
      '',
    ].join('\n'),
  );
  return startServer({ name: 'sentinel', binary, port, dir, args: () => [config] });
}

/**
 * Starts a primary, a replica of it and three sentinels monitoring it (quorum 2, down after
 * {@link DOWN_AFTER_MS}), each on a free 127.0.0.1 port in its own temporary dir, and waits until
 * the replica is synced and every sentinel knows the replica and the other sentinels (so a
 * failover can start as soon as the primary stops answering).
 */
export async function startSentinelTopology(): Promise<SentinelTopology> {
  const started: ServerProcess[] = [];
  const stopAll = async (): Promise<void> => {
    for (const server of started.splice(0).reverse()) {
      try {
        process.kill(server.pid, 'SIGCONT');
      } catch {
        // already gone
      }
      await stopPid(server.pid);
      removeDir(server.dir);
    }
  };
  try {
    const primary = await startRedis();
    started.push(primary);
    const replica = await startRedis({
      extraArgs: ['--replicaof', '127.0.0.1', String(primary.port)],
    });
    started.push(replica);
    const nodes = [primary, replica];
    await poll(
      async () =>
        (await replicationInfo(replica.port))?.get('master_link_status') === 'up' || undefined,
      20_000,
      'replica synced',
    );
    const sentinels: ServerProcess[] = [];
    for (let i = 0; i < SENTINEL_COUNT; i++) {
      const sentinel = await startSentinel(primary.port);
      started.push(sentinel);
      sentinels.push(sentinel);
    }

    const sentinelView = (port: number): Promise<number | undefined> =>
      ask(port, async (c) => {
        const reply = (await c.call(
          'sentinel',
          'get-master-addr-by-name',
          SENTINEL_MASTER_NAME,
        )) as [string, string] | null;
        return reply ? Number(reply[1]) : undefined;
      });
    /** The primary every sentinel agrees on, when it is a master with `replicas` synced replicas. */
    const stableView = async (replicas: number): Promise<number | undefined> => {
      const views = await Promise.all(sentinels.map((s) => sentinelView(s.port)));
      const port = views[0];
      if (port === undefined || views.some((v) => v !== port)) return undefined;
      const info = await replicationInfo(port);
      if (info?.get('role') !== 'master') return undefined;
      const synced = [...info.entries()].filter(
        ([name, value]) => /^slave\d+$/.test(name) && value.includes('state=online'),
      ).length;
      if (synced < replicas) return undefined;
      // Each sentinel must see the other two (a failover needs a quorum) and the replicas.
      for (const sentinel of sentinels) {
        const known = await ask(sentinel.port, async (c) => {
          const peers = (await c.call('sentinel', 'sentinels', SENTINEL_MASTER_NAME)) as unknown[];
          const seen = (await c.call('sentinel', 'replicas', SENTINEL_MASTER_NAME)) as unknown[];
          return peers.length >= SENTINEL_COUNT - 1 && seen.length >= replicas;
        });
        if (!known) return undefined;
      }
      return port;
    };

    const topology: SentinelTopology = {
      sentinels: sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })),
      masterName: SENTINEL_MASTER_NAME,
      nodes,
      sentinelProcesses: sentinels,
      primaryPort: () =>
        poll(
          async () => {
            for (const s of sentinels) {
              const port = await sentinelView(s.port);
              if (port !== undefined) return port;
            }
            return undefined;
          },
          5000,
          'a sentinel answering',
        ),
      node: (port) => {
        const node = nodes.find((n) => n.port === port);
        if (!node) throw new Error(`sentinel topology: no data node on port ${port}`);
        return node;
      },
      waitForNewPrimary: (oldPort, timeoutMs) =>
        poll(
          async () => {
            const views = await Promise.all(sentinels.map((s) => sentinelView(s.port)));
            const port = views[0];
            if (port === undefined || port === oldPort || views.some((v) => v !== port)) {
              return undefined;
            }
            return (await replicationInfo(port))?.get('role') === 'master' ? port : undefined;
          },
          timeoutMs,
          `a primary other than ${oldPort}`,
        ),
      waitUntilStable: (replicas, timeoutMs) =>
        poll(() => stableView(replicas), timeoutMs, `a stable primary with ${replicas} replica(s)`),
      stop: stopAll,
    };
    await topology.waitUntilStable(1, 30_000);
    return topology;
  } catch (error) {
    await stopAll();
    throw error;
  }
}
