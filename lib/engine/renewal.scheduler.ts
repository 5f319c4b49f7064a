import type { LockBackend } from '../backends/lock-backend.interface';
import type { GrantedLock } from './granted.lock';
import { monotonicNow } from './clock';

/** Logs what the scheduler cannot throw to anyone. */
export interface SchedulerLogger {
  warn(message: string): void;
}

/** Most extensions sent in one backend call. */
const BATCH_SIZE = 1000;

/**
 * Renews every held lock of one engine and enforces their validity deadlines, with a single timer.
 *
 * Renewals are due every ttl/3. When one is due, every lock due within the next ttl/6 is renewed
 * in the same batch: renewing a little early is free, and it makes locks acquired at different
 * moments fall into shared cohorts, so 10,000 held locks cost a handful of backend calls per
 * period instead of thousands. A lock whose renewal cannot reach the backend is retried quickly
 * and declared lost at its local validity deadline at the latest.
 */
export class RenewalScheduler {
  private readonly locks = new Set<GrantedLock>();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private stopped = false;

  /**
   * @param onOrphan called for a lock that was already lost locally when the backend confirmed
   *   its renewal: the backend holds it for nobody, so it should be released
   */
  constructor(
    private readonly backend: LockBackend,
    private readonly logger: SchedulerLogger,
    private readonly onOrphan: (lock: GrantedLock) => void,
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

  /** Re-reads a lock's deadlines after it changed outside the scheduler (manual extend). */
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
    return lock.renew && !lock.renewing
      ? Math.min(lock.nextRenewAt, lock.validUntil)
      : lock.validUntil;
  }

  private arm(at: number): void {
    if (this.stopped || at >= this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.tick(), Math.max(0, at - monotonicNow()));
    this.timer.unref();
  }

  private tick(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = monotonicNow();
    const due: GrantedLock[] = [];
    let next = Infinity;
    for (const lock of this.locks) {
      if (now >= lock.validUntil) {
        lock.lost('its validity ran out before a renewal reached the backend');
        continue;
      }
      if (lock.renew && !lock.renewing && lock.renewFrom <= now) {
        due.push(lock); // its next due time is set when the renewal answers
        continue;
      }
      next = Math.min(next, this.dueAt(lock));
    }
    for (let i = 0; i < due.length; i += BATCH_SIZE) {
      void this.renewBatch(due.slice(i, i + BATCH_SIZE));
    }
    for (const lock of due) next = Math.min(next, lock.validUntil);
    if (next < Infinity) this.arm(next);
  }

  private async renewBatch(batch: GrantedLock[]): Promise<void> {
    const requests = batch.map((lock) => ({
      keys: lock.ref.keys,
      token: lock.ref.token,
      ttl: lock.ttl,
    }));
    const sentAt = monotonicNow();
    let call: Promise<boolean[]>;
    try {
      call = this.backend.extend(requests);
    } catch (err) {
      call = Promise.reject(err);
    }
    const settled = call.then(
      () => undefined,
      () => undefined,
    );
    for (const lock of batch) lock.pending = settled;
    try {
      const results = await call;
      batch.forEach((lock, i) => {
        if (lock.pending === settled) lock.pending = undefined;
        if (!lock.held) {
          if (results[i] && lock.mayBeOrphaned) this.onOrphan(lock);
          return;
        }
        // The ttl that was sent, not the lock's current one: a manual extend may have changed it.
        if (results[i]) lock.renewed(sentAt, requests[i].ttl);
        else
          lock.lost(
            'it expired or was taken by another owner before it could be renewed',
            undefined,
            true,
          );
      });
    } catch (err) {
      const retryAt = monotonicNow();
      for (const lock of batch) {
        if (lock.pending === settled) lock.pending = undefined;
        // Retry well before the validity deadline; the deadline itself still ends the lock.
        lock.nextRenewAt = lock.renewFrom = retryAt + Math.min(Math.max(lock.ttl / 10, 10), 1000);
      }
      this.logger.warn(
        `could not renew ${batch.length} lock(s) (${this.backend.name}): ${(err as Error)?.message ?? String(err)}`,
      );
    }
    for (const lock of batch) if (lock.held) this.arm(this.dueAt(lock));
  }
}
