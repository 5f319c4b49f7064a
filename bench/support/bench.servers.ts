import type { Redis } from 'ioredis';
import { startEtcd } from '../../test/servers/etcd.server';
import { startRedisMasters } from '../../test/servers/redis-masters.topology';
import { startSentinelTopology } from '../../test/servers/redis-sentinel.topology';
import { startRedisCluster } from '../../test/servers/redis-cluster.topology';
import { startRedis } from '../../test/servers/redis.server';
import { removeDir, ServerProcess, stopPid } from '../../test/servers/server.process';
import type { BenchEnv, BenchTopology } from '../peers/lock-adapter.interface';
import { fetchText } from '../scenarios/backend.counters';
import type { ServerTracker } from '../scenarios/frozen-server.scenario';
import { log } from './run.log';
import { errorMessage } from './time.util';

/** Sends SIGCONT to a server a fault scenario may have frozen (SIGSTOP). */
export function resumeServer(server: ServerProcess): void {
  try {
    process.kill(server.pid, 'SIGCONT');
  } catch {
    /* already gone */
  }
}

/**
 * Every process the run starts: its redis-server and etcd, the dedicated servers of the fault
 * scenarios and the child processes of the phases. `stop` ends them by PID, also after an error
 * or a signal, so that nothing outlives the run.
 */
export class BenchServers {
  private readonly servers: ServerProcess[] = [];
  /** Stops of the started topologies (each thaws and stops its processes by PID). */
  private readonly topologies: (() => Promise<void>)[] = [];
  /** PIDs of the phases' child processes that are still running. */
  readonly childPids = new Set<number>();
  /** For scenarios that start servers of their own. */
  readonly tracker: ServerTracker = {
    add: (server) => {
      this.servers.push(server);
    },
    delete: (server) => {
      const i = this.servers.indexOf(server);
      if (i >= 0) this.servers.splice(i, 1);
    },
  };

  /** Starts the run's redis-server and etcd on free 127.0.0.1 ports. */
  async start(): Promise<BenchEnv> {
    const redis = await startRedis();
    this.servers.push(redis);
    const etcd = await startEtcd();
    this.servers.push(etcd);
    const env: BenchEnv = {
      redisUrl: `redis://127.0.0.1:${redis.port}`,
      etcdHost: `http://127.0.0.1:${etcd.port}`,
    };
    log(`redis pid ${redis.pid} on ${env.redisUrl}; etcd pid ${etcd.pid} on ${env.etcdHost}`);
    return env;
  }

  /**
   * Starts the topologies of the selected contenders on free 127.0.0.1 ports: one primary, one
   * replica and three sentinels; a Redis Cluster of three primaries; five independent masters.
   * Returns where they listen.
   */
  async startTopologies(needed: ReadonlySet<BenchTopology>): Promise<Partial<BenchEnv>> {
    const env: { -readonly [K in keyof BenchEnv]?: BenchEnv[K] } = {};
    // A topology that does not start costs its contender only (error rows), not the run.
    if (needed.has('redis-sentinel')) {
      try {
        const sentinel = await startSentinelTopology();
        this.topologies.push(() => sentinel.stop());
        env.sentinel = { sentinels: sentinel.sentinels, name: sentinel.masterName };
        log(
          `sentinel topology: data pids ${sentinel.nodes.map((n) => n.pid).join(', ')}, sentinels on ${sentinel.sentinels.map((s) => s.port).join(', ')}`,
        );
      } catch (err) {
        log(`sentinel topology did not start: ${errorMessage(err)}`);
      }
    }
    if (needed.has('redis-cluster')) {
      try {
        const cluster = await startRedisCluster({ primaries: 3 });
        this.topologies.push(() => cluster.stop());
        env.cluster = cluster.startupNodes;
        log(`redis cluster: pids ${cluster.nodes.map((n) => n.pid).join(', ')}`);
      } catch (err) {
        log(`redis cluster did not start: ${errorMessage(err)}`);
      }
    }
    if (needed.has('redlock-5')) {
      try {
        const masters = await startRedisMasters(5);
        this.topologies.push(() => masters.stop());
        env.redlockUrls = masters.urls;
        log(`redlock masters: pids ${masters.masters.map((m) => m.pid).join(', ')}`);
      } catch (err) {
        log(`redlock masters did not start: ${errorMessage(err)}`);
      }
    }
    return env;
  }

  /** Stops the child processes, the topologies, then the servers (resumed first). */
  async stop(): Promise<void> {
    for (const pid of this.childPids) await stopPid(pid);
    for (const stop of this.topologies.splice(0)) {
      await stop().catch((err: unknown) => log(`stopping a topology failed: ${errorMessage(err)}`));
    }
    for (const server of this.servers) {
      // A fault scenario may have left its server frozen when it was interrupted.
      resumeServer(server);
      await server.stop();
      removeDir(server.dir);
    }
  }
}

/** Versions of the run's servers, for the report (`unknown` when etcd does not say). */
export async function serverVersions(
  env: BenchEnv,
  counter: Redis,
): Promise<{ redis: string; etcd: string }> {
  const info = await counter.info('server');
  const redis = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
  let etcd = 'unknown';
  try {
    etcd = (JSON.parse(await fetchText(`${env.etcdHost}/version`, 5_000)) as { etcdserver: string })
      .etcdserver;
  } catch {
    /* reported as unknown */
  }
  return { redis, etcd };
}
