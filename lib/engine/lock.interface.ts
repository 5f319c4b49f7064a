/**
 * A held lock, as returned by `LockService.acquire` and handed to `withLock` callbacks.
 *
 * `await using lock = await locks.acquire('k')` releases it when the block ends.
 */
export interface Lock extends AsyncDisposable {
  /** The first key of the lock in canonical order (the only key of a single-key lock). */
  readonly key: string;
  /** Every key of the lock, de-duplicated, in canonical (code unit) order. */
  readonly keys: readonly string[];
  /** Random owner token of this acquisition: 128 bits, as 22 URL-safe base64 characters. */
  readonly token: string;
  /**
   * Fencing token of `key`: a number that strictly increases with every grant of that key. Pass it
   * to the storage you protect and have it reject writes carrying an older token.
   *
   * Throws a `LockError` on a backend that issues no fencing tokens (the `redlock` backend: its
   * independent masters share no counter, so any number it gave could go backwards).
   */
  readonly fencingToken: number;
  /**
   * Fencing tokens of every key, in the order of `keys`. Throws a `LockError` on a backend that
   * issues none (`redlock`), like {@link fencingToken}.
   */
  readonly fencingTokens: readonly number[];
  /**
   * Aborted when the lock is lost (reason: `LockLostError`) or released. Pass it to the work the
   * lock protects so that work stops when exclusivity ends. Reading `aborted` or calling
   * `throwIfAborted()` checks the validity deadline at that moment, also right after a stall.
   */
  readonly signal: AbortSignal;
  /** Local estimate of when the lock expires unless extended, in epoch ms. */
  readonly expiresAt: number;
  /**
   * Whether this handle still holds the lock (not released, not lost), with its validity deadline
   * (the ttl, and the backend's shared lease where there is one) checked at the moment of reading.
   */
  readonly held: boolean;
  /**
   * Extends the lock to `ttl` ms from now (default: the lock's current ttl), owner-checked.
   * Throws `TypeError` for a ttl outside (0, 2147483647] ms before any backend call,
   * `LockLostError` if the lock was lost, `LockError` once it was released, `LockBackendError` if
   * the backend failed.
   */
  extend(ttl?: number): Promise<void>;
  /**
   * Releases the lock, owner-checked. Once released, another call does nothing; once lost, every
   * call rejects with the `LockLostError` that ended it. Throws `LockBackendError` if the backend
   * could not be reached (the lock then ends on its own: after its ttl, or on etcd once the
   * backend can delete it, at the latest with its session lease).
   */
  release(): Promise<void>;
}
