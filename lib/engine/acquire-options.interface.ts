/** Per-call options of `LockService.acquire`, `tryAcquire` and `withLock`. */
export interface AcquireOptions {
  /** Time-to-live of the lock in ms; renewed while held. Default: the module's `ttl` (30000). */
  ttl?: number;
  /**
   * How long to wait for a busy lock, in ms; 0 tries once. Default: the module's `wait` (10000)
   * for `acquire` and `withLock`, 0 for `tryAcquire`.
   */
  wait?: number;
  /** Cancels waiting: the call rejects with the signal's reason. Has no effect once acquired. */
  signal?: AbortSignal;
  /** Extend the lock in the background (about every ttl/3) while it is held. Default: true. */
  renew?: boolean;
  /**
   * A bounded name for this lock in events, metrics and spans (for instance `'order-payment'`),
   * in place of its raw keys, which are unbounded. At most 200 characters. Default: none.
   */
  name?: string;
  /**
   * Longest time the lock is held, in ms: after it, renewal stops, the lock is released and its
   * signal aborts with `LockLostError` (a stuck job cannot hold a lock forever; ShedLock's
   * lockAtMostFor). Default: no limit.
   */
  maxHold?: number;
}

/** Options of `LockService.withLock` (and of `@Locked`): those of `acquire`, plus `holdAtLeast`. */
export interface WithLockOptions extends AcquireOptions {
  /**
   * Shortest time the lock is held, in ms, from its grant: work that ends sooner returns at once
   * and the lock stays held (renewed) until then, so instances whose clocks or schedulers differ
   * by up to that much do not run the same cron tick twice (ShedLock's lockAtLeastFor). At
   * shutdown such a lock is extended once to the time left and let go (etcd: released, since its
   * locks end with the session). At most `maxHold`, and at most the ttl less its safety margin
   * when `renew` is false. Default 0.
   */
  holdAtLeast?: number;
}
