import { monotonicNow } from './clock';

/** Where failures nobody awaits are reported. */
export interface TaskLogger {
  warn(message: string): void;
}

const RETRY_MIN = 250;
const RETRY_MAX = 2_000;

/**
 * Clean-up the engine owes the backend but no caller waits for: removing an abandoned queue
 * entry or grant (`cancel`) and releasing an orphaned grant. A caller gets its answer within its
 * own bound while these run behind it; a failed one is retried with backoff until `until`, the
 * instant after which what it would remove has expired by itself. {@link drain} runs what is
 * waiting once more and settles everything, so shutdown closes the backend only afterwards.
 */
export class BackgroundTasks {
  private readonly running = new Set<Promise<void>>();
  private readonly waiting = new Set<() => void>();
  private draining = false;

  constructor(private readonly logger: TaskLogger) {}

  /** Number of tasks not settled yet. */
  get size(): number {
    return this.running.size + this.waiting.size;
  }

  /**
   * Runs `fn` now and, while it rejects, again until monotonic `until` (ms). The returned promise
   * never rejects; it settles when `fn` succeeded or the task gave up.
   */
  run(label: string, fn: () => Promise<unknown>, until: number): Promise<void> {
    return this.attempt(label, fn, until, RETRY_MIN);
  }

  /** Counts a call someone else awaits as in flight until it settles, so {@link drain} waits for it. */
  watch(call: Promise<unknown>): void {
    const task = call.then(
      () => undefined,
      () => undefined,
    );
    this.running.add(task);
    void task.finally(() => this.running.delete(task));
  }

  /** From now on a failed task is not retried (shutdown: one try each, then the ttl decides). */
  stopRetrying(): void {
    this.draining = true;
  }

  /** Stops retrying later: what waits runs once now; resolves when every task has settled. */
  async drain(): Promise<void> {
    this.draining = true;
    for (const runNow of [...this.waiting]) runNow();
    // Each round awaits tasks that are bounded by the backend's own timeouts.
    for (let round = 0; this.running.size > 0 && round < 100; round++) {
      await Promise.allSettled([...this.running]);
    }
  }

  private attempt(
    label: string,
    fn: () => Promise<unknown>,
    until: number,
    delay: number,
  ): Promise<void> {
    let call: Promise<unknown>;
    try {
      call = fn();
    } catch (err) {
      call = Promise.reject(err);
    }
    const task = call.then(
      () => undefined,
      (err: unknown) => this.retry(label, fn, until, delay, err),
    );
    this.running.add(task);
    void task.finally(() => this.running.delete(task));
    return task;
  }

  private retry(
    label: string,
    fn: () => Promise<unknown>,
    until: number,
    delay: number,
    err: unknown,
  ): Promise<void> | undefined {
    const message = (err as Error)?.message ?? String(err);
    if (this.draining || monotonicNow() + delay >= until) {
      this.logger.warn(`${label} failed (${message}); left to expire on the backend`);
      return undefined;
    }
    return new Promise<void>((resolve) => {
      const runNow = (): void => {
        clearTimeout(timer);
        this.waiting.delete(runNow);
        resolve(this.attempt(label, fn, until, Math.min(delay * 2, RETRY_MAX)));
      };
      const timer = setTimeout(runNow, delay);
      timer.unref();
      this.waiting.add(runNow);
    });
  }
}
