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
}
