import { errorMessage } from '../errors/error.message';
import { monotonicNow } from './clock';

/** Where failures nobody awaits are reported. */
export interface TaskLogger {
  warn(message: string): void;
}

const RETRY_MIN = 250;
const RETRY_MAX = 2_000;
/**
 * Most tasks waiting to be retried at once. During a long outage every failed call leaves one;
 * past this, a failure is left to expire on the backend instead of growing memory and the burst
 * of calls the backend meets when it returns.
 */
const MAX_WAITING = 1_000;

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
  /** Watched calls not settled yet: a counter, not a Set, as every acquire and release is one. */
  private watched = 0;
  private onIdle: (() => void) | undefined;
  private readonly settled = (): void => {
    if (--this.watched === 0) this.onIdle?.();
  };

  constructor(private readonly logger: TaskLogger) {}

  /** Number of tasks not settled yet. */
  get size(): number {
    return this.running.size + this.waiting.size + this.watched;
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
    this.watched++;
    call.then(this.settled, this.settled);
  }

  /** From now on a failed task is not retried (shutdown: one try each, then the ttl decides). */
  stopRetrying(): void {
    this.draining = true;
  }

  /** Stops retrying later: what waits runs once now; resolves when every task has settled. */
  async drain(): Promise<void> {
    this.draining = true;
    for (const runNow of [...this.waiting]) runNow();
    // Each round awaits tasks that are bounded by the backend's own timeouts; a task may start
    // another once it settles (an acquire answered during shutdown is then cancelled), so each
    // round also lets those continuations run.
    for (let round = 0; (this.running.size > 0 || this.watched > 0) && round < 100; round++) {
      if (this.watched > 0) await new Promise<void>((resolve) => (this.onIdle = resolve));
      this.onIdle = undefined;
      await Promise.allSettled([...this.running]);
      await new Promise((resolve) => setImmediate(resolve));
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
    const message = errorMessage(err);
    if (this.draining || this.waiting.size >= MAX_WAITING || monotonicNow() + delay >= until) {
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
