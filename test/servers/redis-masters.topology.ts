import { startRedis } from './redis.server';
import { removeDir, stopPid, type ServerProcess } from './server.process';

/**
 * N independent redis-servers (no replication between them), as Redlock runs on, all on
 * 127.0.0.1, all started by this process and stopped by PID. Started once per test file.
 */
export interface RedisMastersTopology {
  /** `redis://127.0.0.1:<port>` per master, in start order (stable across restarts). */
  readonly urls: readonly string[];
  /** The master processes now, in the order of `urls`. */
  readonly masters: readonly ServerProcess[];
  /** Freezes master `i` (SIGSTOP): it keeps its connections and answers nothing. */
  freeze(i: number): void;
  /** Thaws master `i` (SIGCONT). */
  thaw(i: number): void;
  /**
   * Kills master `i` (SIGKILL) and starts a new one on the same port, empty (no persistence),
   * as a master that crashed and came back without its data.
   */
  restartEmpty(i: number): Promise<void>;
  /** Thaws every master, stops each by PID and removes their dirs. */
  stop(): Promise<void>;
}

/** Starts `count` masters in parallel. */
export async function startRedisMasters(count: number): Promise<RedisMastersTopology> {
  const started = await Promise.allSettled(Array.from({ length: count }, () => startRedis()));
  const masters = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  if (masters.length < count) {
    // One failed to start: stop the others, so none outlives the test.
    await Promise.all(masters.map((m) => m.stop()));
    for (const m of masters) removeDir(m.dir);
    throw (started.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason;
  }
  const signal = (i: number, name: NodeJS.Signals): void => {
    try {
      process.kill(masters[i].pid, name);
    } catch {
      // already gone
    }
  };
  return {
    urls: masters.map((m) => `redis://127.0.0.1:${m.port}`),
    masters,
    freeze: (i) => signal(i, 'SIGSTOP'),
    thaw: (i) => signal(i, 'SIGCONT'),
    restartEmpty: async (i) => {
      const old = masters[i];
      signal(i, 'SIGCONT');
      await stopPid(old.pid, 'SIGKILL');
      masters[i] = await startRedis({ port: old.port, dir: old.dir });
    },
    stop: async () => {
      for (let i = 0; i < masters.length; i++) signal(i, 'SIGCONT');
      await Promise.all(masters.map((m) => m.stop()));
      for (const m of new Set(masters.map((s) => s.dir))) removeDir(m);
    },
  };
}
