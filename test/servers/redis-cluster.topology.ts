import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sleep } from '../support/async.helpers';
import { setClockOffset, startRedis } from './redis.server';
import { ensureBinary, freePort, removeDir, ServerProcess } from './server.process';

const run = promisify(execFile);
/** Tries per node with newly found free ports (see `startRedisCluster`). */
const PORT_ATTEMPTS = 3;

/** A Redis Cluster of throwaway servers on 127.0.0.1, stopped by PID. */
export interface RedisClusterTopology {
  /** Every node, primaries first (as `redis-cli --cluster create` assigned them). */
  readonly nodes: readonly ServerProcess[];
  /** `{ host, port }` of every node, for an ioredis `Cluster`. */
  readonly startupNodes: readonly { host: string; port: number }[];
  /** kill -9 of the node on `port` (thawed first; no-op if it is gone already). */
  killNode(port: number): Promise<void>;
  /**
   * A new server on the port, dir and arguments of the node killed there: it reads its
   * `nodes.conf` and rejoins (a former primary as a replica of whoever was promoted meanwhile).
   * `nodes` then holds the new process.
   */
  restartNode(port: number): Promise<ServerProcess>;
  /** Port of the primary serving `slot` and of its replicas, as a live node reports it. */
  shardOf(slot: number): Promise<{ primary: number; replicas: number[] } | undefined>;
  /** CLUSTER FAILOVER on the replica on `port`: it takes over from its primary, in sync. */
  manualFailover(port: number): Promise<void>;
  /**
   * Sets the wall-clock offset, in ms, of the node on `port` (started with `clocks: true`; see
   * redis.server.ts's clock shim): the server sees it within 10 ms.
   */
  setClock(port: number, offsetMs: number): void;
  /** Whether the replica on `port` has a live, synced link to its primary. */
  replicaSynced(port: number): Promise<boolean>;
  stop(): Promise<void>;
}

/**
 * Starts `primaries` primaries with `replicasPerPrimary` replicas each, creates the cluster with
 * `redis-cli --cluster create` and waits (bounded) until every node reports `cluster_state:ok`.
 * Short `cluster-node-timeout` so that a failover test sees one within seconds.
 */
export async function startRedisCluster(
  options: {
    primaries?: number;
    replicasPerPrimary?: number;
    nodeTimeoutMs?: number;
    /** Every node behind the clock shim, its offset set by `setClock` (0 until then). */
    clocks?: boolean;
  } = {},
): Promise<RedisClusterTopology> {
  const primaries = options.primaries ?? 3;
  const clockDir = options.clocks ? mkdtempSync(join(tmpdir(), 'ndl-cluster-clocks-')) : undefined;
  const clockFile = (port: number): string | undefined =>
    clockDir === undefined ? undefined : join(clockDir, String(port));
  const replicas = options.replicasPerPrimary ?? 0;
  const cli = ensureBinary('redis-cli', 'redis-tools');
  const nodes: ServerProcess[] = [];
  const argsOf = new Map<number, string[]>();
  const stop = async (): Promise<void> => {
    for (const node of nodes.splice(0)) {
      try {
        process.kill(node.pid, 'SIGCONT');
      } catch {
        // already gone
      }
      await node.stop('SIGKILL');
      removeDir(node.dir);
    }
    if (clockDir) rmSync(clockDir, { recursive: true, force: true });
  };
  try {
    // allSettled: a node that fails to start must not leave the others running unrecorded.
    const settled = await Promise.allSettled(
      Array.from({ length: primaries * (1 + replicas) }, async () => {
        // A port found free can be taken before the node binds it (another server of a parallel
        // suite, an outgoing connection's ephemeral port): then new ports, a few times.
        for (let attempt = 1; ; attempt++) {
          const extraArgs = [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            'nodes.conf',
            '--cluster-node-timeout',
            String(options.nodeTimeoutMs ?? 1_000),
            // A free bus port of its own: the default (port + 10000) may be taken, or above 65535.
            '--cluster-port',
            String(await freePort()),
          ];
          const port = await freePort();
          try {
            const node = await startRedis({ port, extraArgs, clockOffsetFile: clockFile(port) });
            argsOf.set(node.port, extraArgs);
            return node;
          } catch (err) {
            if (attempt >= PORT_ATTEMPTS) throw err;
          }
        }
      }),
    );
    for (const result of settled) if (result.status === 'fulfilled') nodes.push(result.value);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    await run(
      cli,
      [
        '--cluster',
        'create',
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        '--cluster-replicas',
        String(replicas),
        '--cluster-yes',
      ],
      { timeout: 60_000 },
    );
    await waitForClusterOk(cli, nodes, 30_000);
    return {
      nodes,
      startupNodes: nodes.map((n) => ({ host: '127.0.0.1', port: n.port })),
      killNode: async (port) => {
        const node = nodes.find((n) => n.port === port);
        if (!node) throw new Error(`no cluster node on port ${port}`);
        try {
          process.kill(node.pid, 'SIGCONT');
        } catch {
          // already gone
        }
        await node.stop('SIGKILL');
      },
      restartNode: async (port) => {
        const i = nodes.findIndex((n) => n.port === port);
        if (i < 0) throw new Error(`no cluster node on port ${port}`);
        // A server still on the port would answer for the new one, which then goes unrecorded.
        if (nodes[i].child.exitCode === null && nodes[i].child.signalCode === null) {
          throw new Error(`the cluster node on port ${port} is still running; killNode it first`);
        }
        const next = await startRedis({
          port,
          dir: nodes[i].dir,
          extraArgs: argsOf.get(port),
          clockOffsetFile: clockFile(port),
        });
        nodes[i] = next;
        return next;
      },
      shardOf: (slot) => shardOf(cli, nodes, slot),
      setClock: (port, offsetMs) => {
        const file = clockFile(port);
        if (file === undefined) throw new Error('the cluster was started without clocks: true');
        setClockOffset(file, offsetMs);
      },
      manualFailover: async (port) => {
        const { stdout } = await run(cli, ['-p', String(port), 'cluster', 'failover'], {
          timeout: 5_000,
        });
        if (!/OK/.test(stdout)) throw new Error(`CLUSTER FAILOVER on ${port}: ${stdout.trim()}`);
      },
      replicaSynced: (port) =>
        run(cli, ['-p', String(port), 'info', 'replication'], { timeout: 1_000 }).then(
          (r) =>
            /master_link_status:up/.test(r.stdout) && !/master_sync_in_progress:1/.test(r.stdout),
          () => false,
        ),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function waitForClusterOk(
  cli: string,
  nodes: readonly ServerProcess[],
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; attempt < 300 && Date.now() < deadline; attempt++) {
    const states = await Promise.all(
      nodes.map((n) =>
        run(cli, ['-p', String(n.port), 'cluster', 'info'], { timeout: 5_000 }).then(
          (r) => /cluster_state:ok/.test(r.stdout),
          () => false,
        ),
      ),
    );
    if (states.every(Boolean)) return;
    await sleep(100);
  }
  throw new Error(`the Redis cluster did not report cluster_state:ok within ${timeoutMs} ms`);
}

/**
 * The primary serving `slot` and its replicas, from CLUSTER NODES of every node, when the nodes
 * that answer (a frozen or killed one does not) are a majority and all agree; undefined otherwise
 * (a failover in progress, a thawed node that has not learned of it yet).
 */
async function shardOf(
  cli: string,
  nodes: readonly ServerProcess[],
  slot: number,
): Promise<{ primary: number; replicas: number[] } | undefined> {
  const views = await Promise.all(
    nodes.map((node) =>
      run(cli, ['-p', String(node.port), 'cluster', 'nodes'], { timeout: 1_000 }).then(
        (r) => shardIn(r.stdout, slot),
        () => null,
      ),
    ),
  );
  const answered = views.filter((v) => v !== null);
  if (answered.length * 2 <= nodes.length) return undefined;
  const [first] = answered;
  const same = (v: typeof first): boolean =>
    v !== undefined &&
    first !== undefined &&
    v.primary === first.primary &&
    v.replicas.join() === first.replicas.join();
  return answered.every(same) ? first : undefined;
}

/** The shard of `slot` in one node's CLUSTER NODES text; undefined when no live primary has it. */
function shardIn(text: string, slot: number): { primary: number; replicas: number[] } | undefined {
  // <id> <ip:port@bus> <flags> <primary id or -> <ping> <pong> <epoch> <link> <slot ranges…>
  const rows = text
    .split('\n')
    .map((line) => line.trim().split(' '))
    .filter((f) => f.length >= 8);
  const portOf = (f: string[]): number => Number(/:(\d+)@/.exec(f[1])?.[1]);
  const live = (f: string[]): boolean => !f[2].includes('fail') && f[7] === 'connected';
  const serving = rows.find(
    (f) =>
      f[2].includes('master') &&
      live(f) &&
      f.slice(8).some((range) => {
        const [from, to = from] = range.split('-').map(Number);
        return slot >= from && slot <= to;
      }),
  );
  if (!serving) return undefined;
  const replicas = rows
    .filter((f) => f[3] === serving[0] && live(f))
    .map(portOf)
    .sort((a, b) => a - b);
  return { primary: portOf(serving), replicas };
}
