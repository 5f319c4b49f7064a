import { errorMessage } from '../errors/error.message';
import type { BackendExtendRequest, LockBackend } from '../backends/lock-backend.interface';
import type { Extension, GrantedLock } from './granted.lock';
import { monotonicNow } from './clock';

/** Logs what the scheduler cannot throw to anyone. */
export interface SchedulerLogger {
  warn(message: string): void;
}

/**
 * Most renewals one tick sends. A tick runs on the event loop like any request handler: this
 * bounds how long it (and the handling of its answer) holds the loop, whatever the lock count.
 * Locks still due after a full tick are sent one batch per millisecond, the loop serving other
 * work in between.
 */
export const RENEWAL_BATCH = 250;
/** Least time between two "could not renew" warnings; failures in between are counted in the next. */
export const RENEWAL_WARN_INTERVAL_MS = 1_000;

/**
 * Renews every held lock of one engine and enforces their validity deadlines, with a single timer
 * and a queue ordered by due time (a binary heap), so that a tick only touches the locks it acts on.
 *
 * Renewals are due every ttl/3. A tick runs when the first lock is due; the locks that may be
 * renewed a little early (from ttl/6) fill its batch, so locks acquired at different moments
 * share backend calls: 100,000 held locks cost a few dozen calls per second, not thousands. A tick
 * sends at most {@link RENEWAL_BATCH} renewals, the most urgent first, so a large cohort is renewed
 * over many short ticks instead of in one event-loop stall. What an answer means for a lock
 * (renewed, lost, retry soon) is decided by the lock itself ({@link GrantedLock.endExtension});
 * the scheduler only decides when.
 */
export class RenewalScheduler {
  /*
   * The queue: a binary min-heap over `times`, with `locks[i]` due at `times[i]` (its renewal or
   * its validity deadline) and `locks[i].queueIndex === i`. Parallel arrays and an index on the
   * lock, not an entry object or a Map entry per lock: doubles stored unboxed and nothing else to
   * allocate, for 100,000 held locks.
   */
  private readonly times: number[] = [];
  private readonly locks: GrantedLock[] = [];
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private stopped = false;
  private lastWarnAt = -Infinity;
  /** Locks whose renewal failed since the last warning. */
  private unreported = 0;

  constructor(
    private readonly backend: LockBackend,
    private readonly logger: SchedulerLogger,
    /**
     * Arms the timer (`setTimeout` by default); the engine passes one that arms it in its own
     * async context, not in the caller's whose grant happened to arm it.
     */
    private readonly setTimer: (callback: () => void, ms: number) => NodeJS.Timeout = setTimeout,
  ) {}

  /** Starts renewing `lock` and watching its validity deadline. */
  add(lock: GrantedLock): void {
    if (this.stopped || this.queued(lock) !== undefined) return;
    const at = this.dueAt(lock);
    const i = this.locks.length;
    this.locks.push(lock);
    this.times.push(at);
    lock.queueIndex = i;
    this.up(i);
    this.arm(at);
  }

  /** Stops watching `lock` (released or lost). */
  delete(lock: GrantedLock): void {
    const i = this.queued(lock);
    if (i === undefined) return;
    lock.queueIndex = -1;
    const lastLock = this.locks.pop() as GrantedLock;
    const lastAt = this.times.pop() as number;
    if (i === this.locks.length) return;
    this.locks[i] = lastLock;
    this.times[i] = lastAt;
    lastLock.queueIndex = i;
    this.up(i);
    this.down(lastLock.queueIndex);
  }

  /** Re-reads a lock's deadlines after they changed. */
  refresh(lock: GrantedLock): void {
    const i = this.queued(lock);
    if (i === undefined) return;
    const at = this.dueAt(lock);
    this.place(i, at);
    this.arm(at);
  }

  /** Stops every timer; locks are no longer renewed. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    for (const lock of this.locks) lock.queueIndex = -1;
    this.locks.length = 0;
    this.times.length = 0;
  }

  /** The heap index of `lock`, if it is in this queue. */
  private queued(lock: GrantedLock): number | undefined {
    const i = lock.queueIndex;
    return i >= 0 && this.locks[i] === lock ? i : undefined;
  }

  private dueAt(lock: GrantedLock): number {
    return this.renewable(lock) ? Math.min(lock.nextRenewAt, lock.validUntil) : lock.validUntil;
  }

  private renewable(lock: GrantedLock): boolean {
    return lock.live && lock.extendsInBackground && !lock.extending;
  }

  private arm(at: number): void {
    if (this.stopped || at >= this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    // Times are bounded by MAX_DURATION, so the delay never overflows Node's timer.
    this.timer = this.setTimer(() => this.tick(), Math.max(0, Math.ceil(at - monotonicNow())));
    this.timer.unref();
  }

  private tick(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = monotonicNow();
    const sent: GrantedLock[] = [];
    const extensions: Extension[] = [];
    let full = false;
    // Each pass sends the first lock (at most RENEWAL_BATCH times), moves it past `now`, or drops
    // it (lost): bounded by the queue's length.
    for (let pass = this.locks.length + RENEWAL_BATCH; pass > 0 && this.locks.length > 0; pass--) {
      const lock = this.locks[0];
      if (!lock.live) {
        // Being released (or ended without leaving yet): nothing left to renew or to watch.
        this.delete(lock);
        continue;
      }
      if (this.renewable(lock) && lock.renewFrom <= now) {
        if (sent.length >= RENEWAL_BATCH) {
          full = true;
          break;
        }
        // Checks the validity first: a lock past it is lost and leaves the queue.
        const extension = lock.beginExtension(lock.ttl);
        if (extension) {
          sent.push(lock);
          extensions.push(extension);
        }
      } else if (this.times[0] <= now) {
        // Reading `held` checks the validity deadline; a lock past it is lost and leaves the queue.
        if (!lock.held) continue;
      } else {
        break;
      }
      // Still queued: due next at its validity deadline (extending) or its new renewal time;
      // never left on top as due, which would hold up every lock below it.
      if (this.locks[0] === lock) this.place(0, Math.max(this.dueAt(lock), now + 1));
    }
    if (sent.length > 0) void this.renewBatch(sent, extensions);
    if (this.locks.length === 0) return;
    // Early renewals only fill a due lock's batch: renewing every lock as soon as it may be would
    // renew it every ttl/6, twice the backend load.
    const first = this.times[0];
    this.arm(full && first <= now ? now + 1 : first);
  }

  private async renewBatch(sent: GrantedLock[], extensions: Extension[]): Promise<void> {
    const requests: BackendExtendRequest[] = sent.map((lock, i) => ({
      keys: lock.backendKeys,
      token: lock.token,
      ttl: extensions[i].ttl,
    }));
    let results: (boolean | Error)[];
    try {
      results = await this.backend.extend(requests);
    } catch (err) {
      sent.forEach((lock, i) => lock.endExtension(extensions[i], err));
      this.warnFailure(sent.length, err);
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
    if (failed) this.warnFailure(failures, failed);
  }

  /** One warning per interval, however many batches fail: an outage fails every batch. */
  private warnFailure(locks: number, err: unknown): void {
    this.unreported += locks;
    const now = monotonicNow();
    if (now - this.lastWarnAt < RENEWAL_WARN_INTERVAL_MS) return;
    this.lastWarnAt = now;
    const count = this.unreported;
    this.unreported = 0;
    this.logger.warn(
      `could not renew ${count} lock(s) (${this.backend.name}): ${errorMessage(err)}`,
    );
  }

  /** Moves the lock at heap index `i` to due time `at`. */
  private place(i: number, at: number): void {
    const before = this.times[i];
    this.times[i] = at;
    if (at < before) this.up(i);
    else if (at > before) this.down(i);
  }

  private up(index: number): void {
    const { times, locks } = this;
    const at = times[index];
    const lock = locks[index];
    let i = index;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (times[parent] <= at) break;
      times[i] = times[parent];
      locks[i] = locks[parent];
      locks[i].queueIndex = i;
      i = parent;
    }
    if (i === index) return;
    times[i] = at;
    locks[i] = lock;
    lock.queueIndex = i;
  }

  private down(index: number): void {
    const { times, locks } = this;
    const n = times.length;
    const at = times[index];
    const lock = locks[index];
    let i = index;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && times[child + 1] < times[child]) child++;
      if (times[child] >= at) break;
      times[i] = times[child];
      locks[i] = locks[child];
      locks[i].queueIndex = i;
      i = child;
    }
    if (i === index) return;
    times[i] = at;
    locks[i] = lock;
    lock.queueIndex = i;
  }
}
