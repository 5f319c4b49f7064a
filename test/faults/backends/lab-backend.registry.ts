import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LockBackendConfig } from 'nestjs-distributed-lock';
import { keySlot, lockHashKey } from '../../../lib/backends/redis/redis.keys';
import { agreedLeader } from '../../servers/etcd-cluster.topology';
import { planEtcdCluster, startEtcdMember } from '../../servers/etcd.server';
import { startRedisCluster } from '../../servers/redis-cluster.topology';
import { startRedisMasters } from '../../servers/redis-masters.topology';
import { startSentinelTopology } from '../../servers/redis-sentinel.topology';
import { setClockOffset, startRedis } from '../../servers/redis.server';
import { removeDir, ServerProcess, stopPid } from '../../servers/server.process';
import type { FaultFamily } from '../history/history.event';
import { eventually, sleep } from '../../support/async.helpers';
import { reapOnExit } from '../runtime/lab.reaper';

/**
 * The server side of one backend topology as the lab drives it. The port stays the same across
 * a kill and restart, so the lab's proxies reach the new server.
 */
export interface LabServer {
  /** Where the lab's proxies forward to. */
  readonly port: number;
  /** SIGSTOP / SIGCONT of the server process. */
  freeze(): void;
  thaw(): void;
  /** kill -9, then (`restart`) a new server on the same port and data dir. */
  kill(): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
  /** The server's wall-clock offset, ms (entries with clock faults only). */
  readonly clock?: { offsetMs: number; set(offsetMs: number): void };
  /**
   * The workers' backend option when they cannot go through the lab's proxies (Sentinel, whose
   * clients follow the primary the sentinels name; Redlock's several masters): no network
   * faults then.
   */
  readonly clientConfig?: LockBackendConfig;
  /** Faults of this topology by name (a failover, masters lost), run by `topologyFault`. */
  readonly topology?: Readonly<Record<string, (random: () => number) => Promise<void>>>;
  /** Who leads now (the primary of the lab's slot, the etcd leader), for a test of `topology`. */
  readonly leader?: () => Promise<string>;
}

/** One backend or topology of the lab: one entry here, nothing else to change. */
export interface LabBackendEntry {
  readonly name: string;
  /** Starts the servers this entry needs, on 127.0.0.1, free ports. */
  start(): Promise<LabServer>;
  /** The module's backend option for a worker whose connections go through 127.0.0.1:`port`. */
  backend(port: number): LockBackendConfig;
  /** Lock ttl of the workload, ms. */
  readonly ttl: number;
  /** How long a paused holder stays frozen, ms: past the ttl. */
  readonly pauseMs: readonly [min: number, max: number];
  /** An acquire must settle within its wait plus this (the backend's bound plus slack). */
  readonly settleBoundMs: number;
  /**
   * A pause no longer than this cannot lose a lock (the ttl; for etcd, the session lease too):
   * only longer ones count as paused-holder events.
   */
  readonly pausedHolderMinMs: number;
  /** Fault families its phases may inject (memory: none, it lives inside the workers). */
  readonly families: readonly FaultFamily[];
  /** Worker processes and clients per process, when not the profile's (memory: one process). */
  readonly workload?: { readonly workers: number; readonly clientsPerWorker: number };
  /** Grants its fault-free phase must reach in the long run. */
  readonly longGrantTarget: number;
  /**
   * Server-fault phases of its own, in order (each draws from the named topology faults),
   * instead of the generic server pause and kill.
   */
  readonly serverPhases?: readonly { readonly phase: string; readonly faults: readonly string[] }[];
  /** It cannot promise mutual exclusion under its server faults: the lab measures how often. */
  readonly unsafeUnderServerFaults?: boolean;
  /**
   * It promises mutual exclusion under its server faults too (etcd's quorum; Redis that writes
   * its AOF before each reply), as the lab injects them (kill -9 and SIGSTOP of processes; a
   * power loss is not tested): overlaps and late losses there are broken promises.
   */
  readonly safeUnderServerFaults?: boolean;
  /** The workers' key prefix, where not `lab:<name>:` (a Cluster's hash tag). */
  readonly keyPrefix?: string;
  /** False: it hands out no fencing tokens, so its clients write nothing to the resource. */
  readonly fencing?: false;
}

const COMMAND_TIMEOUT = 1000;

/**
 * A data dir on tmpfs where there is one: a kill -9 keeps the data as a disk would, and the fsync
 * per write that a loaded shared disk makes cost ~10 ms does not bound the workload.
 */
function dataDir(name: string): string {
  return mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), `ndl-lab-${name}-`));
}

/**
 * Polls `check` until it yields a value: test/support's `eventually` (bounded in time and
 * rounds), for checks that find a value (a port, a member index) rather than a yes.
 */
async function until<T>(
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  label: string,
): Promise<T> {
  let value: T | undefined;
  await eventually(
    async () => (value = await check()) !== undefined,
    timeoutMs,
    `lab topology: ${label}`,
  );
  return value as T;
}

/** Wraps a server process that can be restarted in place by `start(dir)`. */
function restartable(
  first: ServerProcess,
  start: (dir: string) => Promise<ServerProcess>,
  clock?: LabServer['clock'],
): LabServer {
  reapOnExit(first.child);
  let current = first;
  let running = true;
  const signal = (name: NodeJS.Signals): void => {
    try {
      process.kill(current.pid, name);
    } catch {
      /* already gone */
    }
  };
  return {
    port: first.port,
    freeze: () => signal('SIGSTOP'),
    thaw: () => signal('SIGCONT'),
    kill: async () => {
      signal('SIGCONT');
      await stopPid(current.pid, 'SIGKILL');
      running = false;
    },
    restart: async () => {
      if (running) return;
      current = await start(first.dir);
      reapOnExit(current.child);
      running = true;
    },
    stop: async () => {
      signal('SIGCONT');
      await current.stop();
      removeDir(first.dir);
    },
    clock,
  };
}

/**
 * A wall clock the lab moves through test/servers' clock shim (an LD_PRELOAD offset read from a
 * file every 10 ms; libfaketime hangs Debian's redis-server at startup, see redis.server.ts).
 */
function shiftedClock(): { file: string; clock: NonNullable<LabServer['clock']>; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'ndl-lab-clock-'));
  const file = join(dir, 'offset');
  const clock = {
    offsetMs: 0,
    set(offsetMs: number) {
      clock.offsetMs = Math.trunc(offsetMs);
      setClockOffset(file, clock.offsetMs);
    },
  };
  clock.set(0);
  return { file, clock, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * A single Redis server. `persistent`: AOF written (and fsynced) before every reply,
 * on tmpfs (see {@link dataDir}), so a kill -9 loses no acknowledged grant and server faults are
 * judged like the others; without it a restart comes back empty, which the lab measures.
 */
function redisEntry(
  name: string,
  options: { clockFaults: boolean; persistent: boolean },
): LabBackendEntry {
  const extraArgs = options.persistent
    ? ['--appendonly', 'yes', '--appendfsync', 'always', '--appendfilename', 'lab.aof']
    : [];
  return {
    name,
    start: async () => {
      const dir = options.persistent ? dataDir(name) : undefined;
      if (!options.clockFaults) {
        const first = await startRedis({ extraArgs, dir });
        return restartable(first, (dir) => startRedis({ port: first.port, dir, extraArgs }));
      }
      const shifted = shiftedClock();
      const clockOffsetFile = shifted.file;
      const first = await startRedis({ extraArgs, dir, clockOffsetFile });
      const server = restartable(
        first,
        (dir) => startRedis({ port: first.port, dir, extraArgs, clockOffsetFile }),
        shifted.clock,
      );
      return {
        ...server,
        stop: async () => {
          await server.stop();
          shifted.remove();
        },
      };
    },
    backend: (port) => ({
      type: 'redis',
      url: `redis://127.0.0.1:${port}`,
      commandTimeout: COMMAND_TIMEOUT,
    }),
    ttl: 400,
    pauseMs: [500, 700],
    // wait + one commandTimeout is the documented bound; the rest is a loaded 2-core machine.
    settleBoundMs: COMMAND_TIMEOUT + 1500,
    pausedHolderMinMs: 400,
    families: options.clockFaults
      ? ['client-pause', 'network', 'server', 'clock']
      : ['client-pause', 'network', 'server'],
    // The persistent server's fault-free figure is the plain one's; its server faults are the point.
    longGrantTarget: options.persistent ? 20_000 : 100_000,
    safeUnderServerFaults: options.persistent,
  };
}

const SESSION_TTL = 1000;

const etcdEntry: LabBackendEntry = {
  name: 'etcd',
  start: async () => {
    const [member] = await planEtcdCluster(1);
    const first = await startEtcdMember(member, [member], { dir: dataDir('etcd') });
    return restartable(first, (dir) => startEtcdMember(member, [member], { dir }));
  },
  backend: (port) => ({
    type: 'etcd',
    hosts: [`127.0.0.1:${port}`],
    sessionTtl: SESSION_TTL,
    commandTimeout: COMMAND_TIMEOUT,
  }),
  ttl: 400,
  // Past the session lease (kept alive every third of it), the only case where etcd can grant
  // the lock to someone else during the pause; shorter ones would not count.
  pauseMs: [1050, 1300],
  settleBoundMs: COMMAND_TIMEOUT + 1500,
  pausedHolderMinMs: Math.max(400, SESSION_TTL),
  families: ['client-pause', 'network', 'server'],
  longGrantTarget: 20_000,
  safeUnderServerFaults: true,
};

/**
 * The in-process backend: all clients in one worker process (its locks live there), no server
 * to fault, so only the fault-free phase; pausing the one process would pause every holder.
 */
const memoryEntry: LabBackendEntry = {
  name: 'memory',
  start: () => Promise.resolve({ ...NO_SERVER_CONTROLS, stop: () => Promise.resolve() }),
  backend: () => ({ type: 'memory' }),
  ttl: 400,
  pauseMs: [500, 700],
  settleBoundMs: 1500,
  pausedHolderMinMs: 400,
  families: [],
  workload: { workers: 1, clientsPerWorker: 16 },
  longGrantTarget: 100_000,
};

/**
 * The controls of a server the lab does not drive through one port (memory; topologies whose
 * faults are their own `topology` entries): nothing to freeze, kill or restart.
 */
const NO_SERVER_CONTROLS = {
  port: 0,
  freeze: (): void => undefined,
  thaw: (): void => undefined,
  kill: (): Promise<void> => Promise.resolve(),
  restart: (): Promise<void> => Promise.resolve(),
} as const;

/**
 * What every topology entry shares (Sentinel, Cluster, etcd cluster, Redlock): its workers use
 * the server's `clientConfig`, no proxy, so no network faults; a fault-free target that is the
 * single server's figure, since the faults are the point.
 */
function topologyEntry(
  name: string,
  rest: Pick<LabBackendEntry, 'start' | 'serverPhases'> & Partial<LabBackendEntry>,
): LabBackendEntry {
  return {
    name,
    backend: () => {
      throw new Error(`${name}: workers use the server clientConfig`);
    },
    ttl: 400,
    pauseMs: [500, 700],
    settleBoundMs: COMMAND_TIMEOUT + 1500,
    pausedHolderMinMs: 400,
    families: ['client-pause', 'server'],
    longGrantTarget: 5_000,
    ...rest,
  };
}

function reapAll(servers: readonly ServerProcess[]): void {
  for (const server of servers) reapOnExit(server.child);
}

/**
 * A primary, a replica and three sentinels (test/servers' topology). Its fault freezes the
 * primary until the sentinels promote the replica, then thaws it (it comes back as a replica):
 * a grant the replica had not received yet is lost, so two clients may hold one lock, and the
 * lab counts how often.
 */
const sentinelEntry = topologyEntry('redis-sentinel', {
  start: async () => {
    const topology = await startSentinelTopology();
    reapAll([...topology.nodes, ...topology.sentinelProcesses]);
    return {
      ...NO_SERVER_CONTROLS,
      stop: () => topology.stop(),
      clientConfig: {
        type: 'redis',
        sentinels: topology.sentinels,
        name: topology.masterName,
        commandTimeout: COMMAND_TIMEOUT,
      },
      topology: {
        'sentinel-failover': async () => {
          const old = await topology.primaryPort();
          const node = topology.node(old);
          process.kill(node.pid, 'SIGSTOP');
          try {
            await topology.waitForNewPrimary(old, 20_000);
          } finally {
            process.kill(node.pid, 'SIGCONT');
          }
          await topology.waitUntilStable(1, 30_000);
        },
      },
    };
  },
  serverPhases: [{ phase: 'server', faults: ['sentinel-failover'] }],
  unsafeUnderServerFaults: true,
});

/**
 * Redlock on three independent masters (test/servers' topology), no fencing tokens. Its faults
 * restart masters empty (kill -9, no persistence): one at a time (a minority: still safe while
 * each lock outlives the restart), then two at once (a majority: a lock can be granted twice).
 */
const redlockEntry = topologyEntry('redlock', {
  start: async () => {
    const masters = await startRedisMasters(3);
    reapAll(masters.masters);
    const restart = async (indexes: readonly number[]): Promise<void> => {
      await Promise.all(indexes.map((i) => masters.restartEmpty(i)));
      reapAll(indexes.map((i) => masters.masters[i]));
    };
    return {
      ...NO_SERVER_CONTROLS,
      stop: () => masters.stop(),
      clientConfig: { type: 'redlock', urls: masters.urls, commandTimeout: COMMAND_TIMEOUT },
      topology: {
        'masters-minority-lost': (random) => restart([Math.floor(random() * 3)]),
        'masters-majority-lost': (random) => {
          const spared = Math.floor(random() * 3);
          return restart([0, 1, 2].filter((i) => i !== spared));
        },
      },
    };
  },
  serverPhases: [
    { phase: 'masters-minority', faults: ['masters-minority-lost'] },
    { phase: 'masters-majority', faults: ['masters-majority-lost'] },
  ],
  unsafeUnderServerFaults: true,
  fencing: false,
});

/** Every key of the Cluster entry has this hash tag: one slot, on one primary the faults target. */
const CLUSTER_PREFIX = 'lab:{redis-cluster}:';

/**
 * Redis Cluster, 3 primaries with a replica each (test/servers' topology, node timeout 1 s). All
 * locks live in one slot (the workers' key prefix is a hash tag), so every fault hits the primary
 * that holds them: a manual failover (the replica takes over in sync: nothing lost), the primary
 * frozen until its replica is promoted, then thawed (it rejoins as a replica), and the primary
 * killed until then, then restarted on its data dir. Replication is asynchronous: a grant the
 * replica had not received when promoted is lost, and the lab counts how often. A phase of its
 * own then fails over, gracefully, to replicas whose clocks are 1–2 s behind (every node runs
 * behind the clock shim): tokens must keep going up where nothing was lost.
 */
const clusterEntry = topologyEntry('redis-cluster', {
  keyPrefix: CLUSTER_PREFIX,
  start: async () => {
    const cluster = await startRedisCluster({ primaries: 3, replicasPerPrimary: 1, clocks: true });
    /** Each node's wall-clock offset, ms (see `cluster-failover-clock-behind`). */
    const offsets = new Map<number, number>();
    reapAll(cluster.nodes);
    const slot = keySlot(lockHashKey(`${CLUSTER_PREFIX}k0`));
    /** The slot's shard once every live node agrees on it and a replica is synced. */
    const stable = (label: string, not?: number): Promise<{ primary: number; replica: number }> =>
      until(
        async () => {
          const shard = await cluster.shardOf(slot);
          if (!shard || shard.primary === not) return undefined;
          for (const replica of shard.replicas) {
            if (await cluster.replicaSynced(replica)) return { primary: shard.primary, replica };
          }
          return undefined;
        },
        30_000,
        label,
      );
    /** Waits until a node other than `old` serves the slot (its replica was promoted). */
    const promoted = async (old: number): Promise<void> => {
      await until(
        async () => {
          const shard = await cluster.shardOf(slot);
          return shard && shard.primary !== old ? shard : undefined;
        },
        20_000,
        `a primary other than ${old} for slot ${slot}`,
      );
      lastElection = performance.now();
    };
    // A primary votes for one replica of a shard at most once per two node timeouts (2 s here):
    // a failover asked for sooner gets no votes and never happens.
    let lastElection = -Infinity;
    const votesAgain = (): Promise<void> =>
      sleep(Math.max(0, lastElection + 2_500 - performance.now()));
    const signal = (port: number, name: NodeJS.Signals): void => {
      const node = cluster.nodes.find((n) => n.port === port);
      try {
        if (node) process.kill(node.pid, name);
      } catch {
        /* already gone */
      }
    };
    try {
      await stable('the cluster settled');
    } catch (err) {
      // Not handed to the runner yet: nothing else would stop its six servers before the lab ends.
      await cluster.stop();
      throw err;
    }
    return {
      ...NO_SERVER_CONTROLS,
      stop: () => cluster.stop(),
      leader: async () => `primary 127.0.0.1:${(await stable('a settled shard')).primary}`,
      clientConfig: {
        type: 'redis',
        cluster: [...cluster.startupNodes],
        commandTimeout: COMMAND_TIMEOUT,
      },
      topology: {
        'cluster-failover': async () => {
          await votesAgain();
          const { primary, replica } = await stable('a synced replica');
          await cluster.manualFailover(replica);
          await promoted(primary);
          await stable('the failed-over shard settled', primary);
        },
        'cluster-primary-frozen': async () => {
          await votesAgain();
          const { primary } = await stable('a synced replica');
          signal(primary, 'SIGSTOP');
          try {
            await promoted(primary);
          } finally {
            signal(primary, 'SIGCONT');
          }
          await stable('the thawed primary rejoined as a replica', primary);
        },
        'cluster-primary-killed': async (random) => {
          await votesAgain();
          const { primary } = await stable('a synced replica');
          await cluster.killNode(primary);
          try {
            await promoted(primary);
            await sleep(200 + 800 * random());
          } finally {
            reapOnExit((await cluster.restartNode(primary)).child);
          }
          await stable('the restarted primary rejoined as a replica', primary);
        },
        // Last: the clocks stay behind after it (never set forward), so the tests that run every
        // fault in order, and the lab's own phases, meet it after the others.
        // A graceful failover (nothing lost) to a replica whose clock is 1–2 s behind its
        // primary's, more than the failover takes: the tokens the replica hands out then come
        // from the replicated counter, not from its clock, and must keep going up. Always behind
        // the primary (keys expire by the server's clock, and replicated expiries are absolute:
        // a clock ahead would expire them early), so only the tokens are at stake. Redis Cluster
        // times its elections by the wall clock: right after a step back a replica may wait out
        // the step before it runs for election, so the failover is asked for only then.
        'cluster-failover-clock-behind': async (random) => {
          const { primary, replica } = await stable('a synced replica');
          const behind = (offsets.get(primary) ?? 0) - Math.round(1_000 + 1_000 * random());
          const step = Math.abs((offsets.get(replica) ?? 0) - behind);
          offsets.set(replica, behind);
          cluster.setClock(replica, behind);
          await sleep(step + 2_500);
          await votesAgain();
          await cluster.manualFailover(replica);
          await promoted(primary);
          await stable('the failed-over shard settled', primary);
        },
      },
    };
  },
  serverPhases: [
    {
      phase: 'cluster-failover',
      faults: ['cluster-failover', 'cluster-primary-frozen', 'cluster-primary-killed'],
    },
    { phase: 'cluster-failover-clock-behind', faults: ['cluster-failover-clock-behind'] },
  ],
  unsafeUnderServerFaults: true,
});

/**
 * Three etcd members (tmpfs data dirs, election timeout 500 ms), the workers' clients given all
 * three. Its faults take the leader away: killed (kill -9) until the other two elect a new one,
 * then restarted on its data dir; or frozen (SIGSTOP) until then, then thawed. etcd's quorum
 * keeps every acknowledged grant and lease, so these faults are judged like the others.
 */
const etcdClusterEntry = topologyEntry('etcd-cluster', {
  start: async () => {
    const members = await planEtcdCluster(3);
    // One explicit token: startEtcdMember's default differs between members started apart.
    const token = `ndl-lab-${process.pid}-${randomUUID()}`;
    const start = (i: number, dir: string): Promise<ServerProcess> =>
      startEtcdMember(members[i], members, { dir, token });
    // Members only serve once a quorum formed: started together.
    const dirs = members.map(() => dataDir('etcd'));
    const settled = await Promise.allSettled(members.map((_, i) => start(i, dirs[i])));
    const started = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    reapAll(started);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      for (const p of started) await p.stop('SIGKILL');
      // On tmpfs: a dir left behind holds memory until the machine restarts.
      for (const dir of dirs) removeDir(dir);
      throw failed.reason;
    }
    const servers = started.map((first, i) => restartable(first, (dir) => start(i, dir)));
    const leader = (label: string, not?: number): Promise<number> =>
      until(() => agreedLeader(members, { every: false, not }), 20_000, label);
    const whole = (label: string): Promise<number> =>
      until(() => agreedLeader(members, { every: true }), 30_000, label);
    try {
      await whole('the etcd cluster formed');
    } catch (err) {
      // Not handed to the runner yet: nothing else would stop the members before the lab ends.
      for (const server of servers) await server.stop();
      throw err;
    }
    return {
      ...NO_SERVER_CONTROLS,
      stop: async () => {
        for (const server of servers) await server.stop();
      },
      leader: async () => `leader ${members[await whole('one leader')].name}`,
      clientConfig: {
        type: 'etcd',
        hosts: members.map((m) => `127.0.0.1:${m.clientPort}`),
        sessionTtl: SESSION_TTL,
        commandTimeout: COMMAND_TIMEOUT,
      },
      topology: {
        'leader-killed': async (random) => {
          const old = await whole('one leader');
          await servers[old].kill();
          try {
            await leader('a new leader', old);
            await sleep(200 + 800 * random());
          } finally {
            await servers[old].restart();
          }
          await whole('the restarted member rejoined');
        },
        'leader-paused': async (random) => {
          const old = await whole('one leader');
          servers[old].freeze();
          try {
            await leader('a new leader', old);
            await sleep(200 + 800 * random());
          } finally {
            servers[old].thaw();
          }
          await whole('the thawed member rejoined');
        },
      },
    };
  },
  // Past the session lease, as for a single member.
  pauseMs: [1050, 1300],
  pausedHolderMinMs: Math.max(400, SESSION_TTL),
  serverPhases: [{ phase: 'leader-lost', faults: ['leader-killed', 'leader-paused'] }],
  safeUnderServerFaults: true,
});

/** Every backend the lab knows. */
export const LAB_BACKENDS: Readonly<Record<string, LabBackendEntry>> = {
  memory: memoryEntry,
  redis: redisEntry('redis', { clockFaults: true, persistent: false }),
  'redis-aof': redisEntry('redis-aof', { clockFaults: false, persistent: true }),
  etcd: etcdEntry,
  'etcd-cluster': etcdClusterEntry,
  'redis-sentinel': sentinelEntry,
  'redis-cluster': clusterEntry,
  redlock: redlockEntry,
};

export function labBackend(name: string): LabBackendEntry {
  const entry = LAB_BACKENDS[name];
  if (!entry) {
    throw new Error(
      `unknown lab backend "${name}"; known: ${Object.keys(LAB_BACKENDS).join(', ')}`,
    );
  }
  return entry;
}
