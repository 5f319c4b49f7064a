import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { sleep } from '../support/async.helpers';
import { startRedis } from './redis.server';
import { ensureBinary, freePort, removeDir, ServerProcess } from './server.process';

const run = promisify(execFile);

/** A Redis Cluster of throwaway servers on 127.0.0.1, stopped by PID. */
export interface RedisClusterTopology {
  /** Every node, primaries first (as `redis-cli --cluster create` assigned them). */
  readonly nodes: readonly ServerProcess[];
  /** `{ host, port }` of every node, for an ioredis `Cluster`. */
  readonly startupNodes: readonly { host: string; port: number }[];
  stop(): Promise<void>;
}

/**
 * Starts `primaries` primaries with `replicasPerPrimary` replicas each, creates the cluster with
 * `redis-cli --cluster create` and waits (bounded) until every node reports `cluster_state:ok`.
 * Short `cluster-node-timeout` so that a failover test sees one within seconds.
 */
export async function startRedisCluster(
  options: { primaries?: number; replicasPerPrimary?: number; nodeTimeoutMs?: number } = {},
): Promise<RedisClusterTopology> {
  const primaries = options.primaries ?? 3;
  const replicas = options.replicasPerPrimary ?? 0;
  const cli = ensureBinary('redis-cli', 'redis-tools');
  const nodes: ServerProcess[] = [];
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
  };
  try {
    // allSettled: a node that fails to start must not leave the others running unrecorded.
    const settled = await Promise.allSettled(
      Array.from({ length: primaries * (1 + replicas) }, async () =>
        startRedis({
          extraArgs: [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            'nodes.conf',
            '--cluster-node-timeout',
            String(options.nodeTimeoutMs ?? 1_000),
            // A free bus port of its own: the default (port + 10000) may be taken, or above 65535.
            '--cluster-port',
            String(await freePort()),
          ],
        }),
      ),
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
