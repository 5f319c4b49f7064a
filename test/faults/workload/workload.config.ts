import type { DistributedLockModuleOptions } from 'nestjs-distributed-lock';

/** What one worker process runs; passed as JSON, so only plain data (backend by config). */
export interface WorkerConfig {
  /** `w0`, `w1`, …: the process's name in the history. */
  readonly process: string;
  readonly clients: number;
  /** Keys the clients contend for. */
  readonly keys: readonly string[];
  /** Every n-th operation of a client locks two keys at once (0: never). */
  readonly multiKeyEvery: number;
  readonly ttl: number;
  readonly wait: number;
  /** Pause after each write inside the critical section, ms. */
  readonly holdMs: number;
  /** Writes per critical section (the first right after the grant). */
  readonly writes: number;
  readonly moduleOptions: DistributedLockModuleOptions;
  readonly resourcePort: number;
  readonly historyPath: string;
  /** Bounds of each client's loop. */
  readonly maxOps: number;
  readonly maxMs: number;
  readonly seed: number;
}
