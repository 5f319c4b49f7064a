import { errorMessage } from '../errors/error.message';
import type { LockBackend } from '../backends/lock-backend.interface';
import type { Extension, GrantedLock } from './granted.lock';
import { monotonicNow } from './clock';

/** Logs what the scheduler cannot throw to anyone. */
export interface SchedulerLogger {
  warn(message: string): void;
}

/**
 * Renews every held lock of one engine and enforces their validity deadlines, with a single timer.
 *
 * Renewals are due every ttl/3. When one is due, every lock due within the next ttl/6 is renewed
 * in the same batch: renewing a little early is free, and it makes locks acquired at different
 * moments fall into shared cohorts, so 10,000 held locks cost a handful of backend calls per
 * period instead of thousands. What an answer means for a lock (renewed, lost, retry soon) is
 * decided by the lock itself ({@link GrantedLock.endExtension}); the scheduler only decides when.
 */
export class RenewalScheduler {
  private readonly locks = new Set<GrantedLock>();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private stopped = false;

  constructor(
    private readonly backend: LockBackend,
    private readonly logger: SchedulerLogger,
  ) {}

  /** Starts renewing `lock` and watching its validity deadline. */
  add(lock: GrantedLock): void {
    if (this.stopped) return;
    this.locks.add(lock);
    this.arm(this.dueAt(lock));
  }

  /** Stops watching `lock` (released or lost). */
  delete(lock: GrantedLock): void {
    this.locks.delete(lock);
  }

  /** Re-reads a lock's deadlines after they changed. */
  refresh(lock: GrantedLock): void {
    if (this.locks.has(lock)) this.arm(this.dueAt(lock));
  }

  /** Stops every timer; locks are no longer renewed. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    this.locks.clear();
  }

  private dueAt(lock: GrantedLock): number {
    return lock.renew && !lock.extending
      ? Math.min(lock.nextRenewAt, lock.validUntil)
      : lock.validUntil;
  }

  private arm(at: number): void {
    if (this.stopped || at >= this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    // Times are bounded by MAX_DURATION, so the delay never overflows Node's timer.
    this.timer = setTimeout(() => this.tick(), Math.max(0, Math.ceil(at - monotonicNow())));
    this.timer.unref();
  }

  private tick(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = monotonicNow();
    const due: GrantedLock[] = [];
    let next = Infinity;
    for (const lock of this.locks) {
      // Reading `held` checks the validity deadline; a lock past it is lost and leaves the set.
      if (!lock.held) continue;
      if (lock.renew && !lock.extending && lock.renewFrom <= now) {
        due.push(lock);
        continue;
      }
      next = Math.min(next, this.dueAt(lock));
    }
    // One call: each backend splits a batch by its own cost (Redis by keys per script, etcd by
    // operations per transaction).
    if (due.length > 0) void this.renewBatch(due);
    for (const lock of due) next = Math.min(next, lock.validUntil);
    if (next < Infinity) this.arm(next);
  }

  private async renewBatch(batch: GrantedLock[]): Promise<void> {
    const sent: GrantedLock[] = [];
    const extensions: Extension[] = [];
    for (const lock of batch) {
      const extension = lock.beginExtension(lock.ttl);
      if (!extension) continue;
      sent.push(lock);
      extensions.push(extension);
    }
    if (sent.length === 0) return;
    const requests = sent.map((lock, i) => ({ ...lock.ref, ttl: extensions[i].ttl }));
    let results: (boolean | Error)[];
    try {
      results = await this.backend.extend(requests);
    } catch (err) {
      sent.forEach((lock, i) => lock.endExtension(extensions[i], err));
      this.logger.warn(
        `could not renew ${sent.length} lock(s) (${this.backend.name}): ${errorMessage(err)}`,
      );
      return;
    }
    let failed: Error | undefined;
    let failures = 0;
    sent.forEach((lock, i) => {
      const result = results[i];
      if (result instanceof Error) {
        failed = result;
        failures++;
      }
      lock.endExtension(extensions[i], result instanceof Error ? result : result === true);
    });
    if (failed) {
      this.logger.warn(
        `could not renew ${failures} lock(s) (${this.backend.name}): ${errorMessage(failed)}`,
      );
    }
  }
}
