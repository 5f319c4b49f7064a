import type { LockBackendConfig } from 'nestjs-distributed-lock';
import { planEtcdCluster, startEtcdMember } from '../../servers/etcd.server';
import { startRedis } from '../../servers/redis.server';
import { removeDir, ServerProcess, stopPid } from '../../servers/server.process';

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
}

const COMMAND_TIMEOUT = 1000;

/** Wraps a server process that can be restarted in place by `start(dir)`. */
function restartable(
  first: ServerProcess,
  start: (dir: string) => Promise<ServerProcess>,
): LabServer {
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
      running = true;
    },
    stop: async () => {
      signal('SIGCONT');
      await current.stop();
      removeDir(first.dir);
    },
  };
}

function redisEntry(name: string, extraArgs: string[]): LabBackendEntry {
  return {
    name,
    start: async () => {
      const first = await startRedis({ extraArgs });
      return restartable(first, (dir) => startRedis({ port: first.port, dir, extraArgs }));
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
  };
}

const SESSION_TTL = 1000;

const etcdEntry: LabBackendEntry = {
  name: 'etcd',
  start: async () => {
    const [member] = await planEtcdCluster(1);
    const first = await startEtcdMember(member, [member]);
    return restartable(first, (dir) => startEtcdMember(member, [member], { dir }));
  },
  backend: (port) => ({
    type: 'etcd',
    hosts: [`127.0.0.1:${port}`],
    sessionTtl: SESSION_TTL,
    commandTimeout: COMMAND_TIMEOUT,
  }),
  ttl: 400,
  // Past the ttl always; past the session lease (kept alive every third of it) about half the
  // time, the only case where etcd can grant the lock to someone else during the pause.
  pauseMs: [600, 1300],
  settleBoundMs: COMMAND_TIMEOUT + 1500,
};

/** Every backend the lab knows. Sentinel, Cluster and Redlock entries go here. */
export const LAB_BACKENDS: Readonly<Record<string, LabBackendEntry>> = {
  redis: redisEntry('redis', []),
  'redis-aof': redisEntry('redis-aof', ['--appendonly', 'yes', '--appendfsync', 'always']),
  etcd: etcdEntry,
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
