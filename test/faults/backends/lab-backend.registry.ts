import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LockBackendConfig } from 'nestjs-distributed-lock';
import { planEtcdCluster, startEtcdMember } from '../../servers/etcd.server';
import { startRedisMasters } from '../../servers/redis-masters.topology';
import { startSentinelTopology } from '../../servers/redis-sentinel.topology';
import { setClockOffset, startRedis } from '../../servers/redis.server';
import { removeDir, ServerProcess, stopPid } from '../../servers/server.process';
import type { FaultFamily } from '../history/history.event';
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
  /** False: it hands out no fencing tokens, so its clients write nothing to the resource. */
  readonly fencing?: false;
}

const COMMAND_TIMEOUT = 1000;

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

function redisEntry(name: string, extraArgs: string[], clockFaults: boolean): LabBackendEntry {
  return {
    name,
    start: async () => {
      if (!clockFaults) {
        const first = await startRedis({ extraArgs });
        return restartable(first, (dir) => startRedis({ port: first.port, dir, extraArgs }));
      }
      const shifted = shiftedClock();
      const clockOffsetFile = shifted.file;
      const first = await startRedis({ extraArgs, clockOffsetFile });
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
    families: clockFaults
      ? ['client-pause', 'network', 'server', 'clock']
      : ['client-pause', 'network', 'server'],
    longGrantTarget: 100_000,
  };
}

const SESSION_TTL = 1000;

const etcdEntry: LabBackendEntry = {
  name: 'etcd',
  start: async () => {
    const [member] = await planEtcdCluster(1);
    // On tmpfs: a kill -9 keeps the data as a disk would, and the fsync per write that a loaded
    // shared disk makes cost ~10 ms does not bound the workload.
    const dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'ndl-lab-etcd-'));
    const first = await startEtcdMember(member, [member], { dir });
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
};

/**
 * The in-process backend: all clients in one worker process (its locks live there), no server
 * to fault, so only the fault-free phase; pausing the one process would pause every holder.
 */
const memoryEntry: LabBackendEntry = {
  name: 'memory',
  start: () =>
    Promise.resolve({
      port: 0,
      freeze: () => undefined,
      thaw: () => undefined,
      kill: () => Promise.resolve(),
      restart: () => Promise.resolve(),
      stop: () => Promise.resolve(),
    }),
  backend: () => ({ type: 'memory' }),
  ttl: 400,
  pauseMs: [500, 700],
  settleBoundMs: 1500,
  pausedHolderMinMs: 400,
  families: [],
  workload: { workers: 1, clientsPerWorker: 16 },
  longGrantTarget: 100_000,
};

function reapAll(servers: readonly ServerProcess[]): void {
  for (const server of servers) reapOnExit(server.child);
}

/**
 * A primary, a replica and three sentinels (test/servers' topology). Its fault freezes the
 * primary until the sentinels promote the replica, then thaws it (it comes back as a replica):
 * a grant the replica had not received yet is lost, so two clients may hold one lock, and the
 * lab counts how often.
 */
const sentinelEntry: LabBackendEntry = {
  name: 'redis-sentinel',
  start: async () => {
    const topology = await startSentinelTopology();
    reapAll(topology.nodes);
    const nothing = (): Promise<void> => Promise.resolve();
    return {
      port: 0,
      freeze: () => undefined,
      thaw: () => undefined,
      kill: nothing,
      restart: nothing,
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
  backend: () => {
    throw new Error('redis-sentinel: workers use the server clientConfig');
  },
  ttl: 400,
  pauseMs: [500, 700],
  settleBoundMs: COMMAND_TIMEOUT + 1500,
  pausedHolderMinMs: 400,
  families: ['client-pause', 'server'],
  // Fault-free grants are the single server's figure; here the faults are the point.
  longGrantTarget: 5_000,
  serverPhases: [{ phase: 'server', faults: ['sentinel-failover'] }],
  unsafeUnderServerFaults: true,
};

/**
 * Redlock on three independent masters (test/servers' topology), no fencing tokens. Its faults
 * restart masters empty (kill -9, no persistence): one at a time (a minority: still safe while
 * each lock outlives the restart), then two at once (a majority: a lock can be granted twice).
 */
const redlockEntry: LabBackendEntry = {
  name: 'redlock',
  start: async () => {
    const masters = await startRedisMasters(3);
    reapAll(masters.masters);
    const restart = async (indexes: readonly number[]): Promise<void> => {
      await Promise.all(indexes.map((i) => masters.restartEmpty(i)));
      reapAll(indexes.map((i) => masters.masters[i]));
    };
    const nothing = (): Promise<void> => Promise.resolve();
    return {
      port: 0,
      freeze: () => undefined,
      thaw: () => undefined,
      kill: nothing,
      restart: nothing,
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
  backend: () => {
    throw new Error('redlock: workers use the server clientConfig');
  },
  ttl: 400,
  pauseMs: [500, 700],
  settleBoundMs: COMMAND_TIMEOUT + 1500,
  pausedHolderMinMs: 400,
  families: ['client-pause', 'server'],
  // Fault-free grants are the single server's figure; here the faults are the point.
  longGrantTarget: 5_000,
  serverPhases: [
    { phase: 'masters-minority', faults: ['masters-minority-lost'] },
    { phase: 'masters-majority', faults: ['masters-majority-lost'] },
  ],
  unsafeUnderServerFaults: true,
  fencing: false,
};

/** Every backend the lab knows. Cluster entries go here. */
export const LAB_BACKENDS: Readonly<Record<string, LabBackendEntry>> = {
  memory: memoryEntry,
  redis: redisEntry('redis', [], true),
  'redis-aof': redisEntry('redis-aof', ['--appendonly', 'yes', '--appendfsync', 'always'], false),
  etcd: etcdEntry,
  'redis-sentinel': sentinelEntry,
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
