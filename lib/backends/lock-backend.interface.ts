/**
 * The contract every storage backend implements.
 *
 * Backends do single attempts only. Waiting, renewal scheduling, loss detection, reentrancy and
 * key validation live once, in the engine, shared by every backend. All times are milliseconds;
 * a backend converts at its own boundary (etcd speaks seconds).
 *
 * Keys handed to a backend are final: already validated, encoded and prefixed with `keyPrefix`,
 * and, for a multi-key lock, de-duplicated and sorted in canonical (code unit) order.
 */

/** Identifies one grant: the keys it covers and the random owner token of that acquisition. */
export interface BackendLockRef {
  /** Final backend keys, canonical order, at least one. */
  readonly keys: readonly string[];
  /** Random owner token, unique per acquisition. */
  readonly token: string;
}

/** One acquire attempt. */
export interface BackendAcquireRequest extends BackendLockRef {
  /** Lock time-to-live in ms. */
  readonly ttl: number;
  /**
   * When > 0 and the keys are busy, the backend queues this token as a waiter for this many ms, so
   * that a release hands the lock to the longest-waiting live waiter (FIFO) and wakes it through
   * {@link LockBackend.onWake}. A later attempt with the same token refreshes the queue entry
   * instead of adding a second one. When 0 or absent, a busy attempt leaves no trace.
   */
  readonly queueFor?: number;
  /**
   * Number of this attempt within its acquisition (1, 2, ...). A backend that hands a lock over
   * to a queued waiter reports the attempt whose queue entry it served in the wake-up
   * ({@link BackendHandoff}), which lets the engine use the handoff without another round trip.
   */
  readonly attempt?: number;
}

/**
 * A lock handed over to a queued waiter, as reported with its wake-up. The handoff happened after
 * the server processed attempt `attempt` of the waiter (that attempt left the queue entry the
 * handoff served), so the reservation lasts at least `ttl` ms from when that attempt was sent.
 */
export interface BackendHandoff {
  /** The waiter's attempt whose queue entry was served. */
  readonly attempt: number;
  /** One fencing token per key, in the order of the request's keys. */
  readonly fencingTokens: readonly number[];
  /** How long the lock stays reserved for the waiter, in ms from the handoff. */
  readonly ttl: number;
}

/** Outcome of one acquire attempt. */
export type BackendAcquireResult =
  | {
      /** Granted: the caller holds every key of the request. */
      readonly acquired: true;
      /**
       * One fencing token per key, in the order of `keys`; strictly increasing per key. Empty on
       * a backend that declares `fencing: false` (see {@link LockBackend.fencing}).
       */
      readonly fencingTokens: readonly number[];
    }
  | {
      /** Busy: someone else holds at least one of the keys; nothing was granted. */
      readonly acquired: false;
      /**
       * Upper bound, in ms, after which a new attempt may succeed without any wake-up (usually the
       * current holder's remaining TTL). The engine re-attempts no later than this, so a lost
       * wake-up message delays a waiter but never strands it.
       */
      readonly retryAfter: number;
    };

/** One extension in a batch. */
export interface BackendExtendRequest extends BackendLockRef {
  /** New time-to-live in ms, counted from when the backend applies it. */
  readonly ttl: number;
}

/** What {@link LockBackend.inspect} reports about one key. */
export interface BackendLockInfo {
  /** Whether some owner currently holds the key. */
  readonly held: boolean;
  /** Remaining time-to-live of the holder in ms, when held. */
  readonly ttl?: number;
  /** Fencing token of the current grant, when held and known. */
  readonly fencingToken?: number;
}

/** What a backend reports when it learns that grants ended without a release (a lost lease). */
export interface BackendLossEvent {
  /** The grants that are gone. */
  readonly locks: readonly BackendLockRef[];
  /** Why they ended. */
  readonly reason: string;
  /** The underlying error, when there was one. */
  readonly cause?: unknown;
}

/**
 * What a backend calls on a wake-up of a waiter: with the lock it handed over (`handoff`), or with
 * `recheckAfter` ms by which the waiter should try again, or with neither (try again now).
 */
export type WakeListener = (handoff?: BackendHandoff, recheckAfter?: number) => void;

/** Stops a wake-up subscription. */
export type Unsubscribe = () => void;

/**
 * A storage backend for distributed locks. Implement this to plug in your own store and pass the
 * instance as the module's `backend` option.
 *
 * Every method either resolves with a definite answer or rejects with a `LockBackendError` within
 * a bounded time; it never hangs and never reports "busy" for an outage.
 */
export interface LockBackend {
  /** Short name used in logs and errors, such as `memory`, `redis`, `etcd`. */
  readonly name: string;

  /**
   * Optional: the most keys one lock may have on this backend (etcd: 32). The engine rejects a
   * larger lock with a `TypeError` before any call. Absent: no limit of the backend's own.
   */
  readonly maxKeys?: number;

  /**
   * Optional: checks the final keys (prefixed) of a lock the backend cannot take as given, such as
   * keys of several hash slots on Redis Cluster. The engine calls it before any backend call.
   *
   * @throws TypeError saying why and what to change
   */
  readonly assertKeys?: (keys: readonly string[]) => void;

  /**
   * Optional: `false` when the backend issues no fencing tokens (Redlock: independent masters
   * share no counter, so no number it could hand out is known to increase). Its grants then carry
   * empty `fencingTokens`, it offers no {@link BackendHandoff}, and `lock.fencingToken` throws a
   * `LockError` instead of returning a number that could go backwards. Absent: fencing tokens.
   */
  readonly fencing?: false;

  /**
   * Optional: where the backend connects, for messages (`127.0.0.1:6379`, or etcd's host list).
   * The engine puts it in every `LockBackendError`, so an error names the server it failed on.
   */
  readonly endpoint?: string;

  /**
   * Optional: one bounded round trip that proves the backend answers (Redis `PING`, an etcd
   * read). Run by the module at startup unless `checkBackend: false`. Rejects with the
   * underlying cause (a connection refused, a DNS failure, an authentication error) within the
   * backend's own operation bound. Absent: the engine reads one key with `inspect` instead.
   */
  ping?(): Promise<void>;

  /**
   * Tries once to take every key of `request` for its token, all or none. Also succeeds when the
   * keys were already handed to this token by a release (fair handoff); the attempt then claims
   * them with the full `ttl`. Respects the wait queue: a newcomer does not jump ahead of live
   * queued waiters.
   */
  acquire(request: BackendAcquireRequest): Promise<BackendAcquireResult>;

  /**
   * Extends several grants at once (renewals are batched by the engine, in one call however many
   * are due: split the batch by what one request of your store can carry). Each entry is extended
   * only if it is still held by its token, atomically; a key handed to the token and not claimed
   * yet counts as held, and is claimed. Resolves one boolean per entry, `false` meaning the grant
   * is gone or owned by someone else, or an `Error` for an entry whose part of the batch failed
   * while other parts went through (one Redis Cluster primary down of several): that entry's
   * renewal failed, and is retried; it is not lost. Rejects when the whole call failed.
   */
  extend(requests: readonly BackendExtendRequest[]): Promise<(boolean | Error)[]>;

  /**
   * Releases a grant if, and only if, it is still held by its token; atomically hands each key
   * to its next live queued waiter, if any, and wakes that waiter. Resolves `false` when the
   * grant was already gone.
   */
  release(ref: BackendLockRef): Promise<boolean>;

  /**
   * Gives up on an acquisition that was never returned to a caller: removes the token's queue
   * entries and releases every key the token holds, whether a release handed it over or an
   * attempt whose answer was lost (timeout, disconnect) granted it. The engine calls it after a
   * wait ends without a grant and after any failed attempt. Idempotent.
   */
  cancel(ref: BackendLockRef): Promise<void>;

  /** Reports whether a single key is held, without changing anything. */
  inspect(key: string): Promise<BackendLockInfo>;

  /**
   * Calls `listener` whenever a wait of `token` may now succeed (the lock was handed to it, or a
   * key it waits for was released). Registered by the engine before its first attempt, so no
   * wake-up is missed. Wake-ups are hints: spurious ones are allowed, missing ones are covered
   * by `retryAfter`. A backend that knows the lock was handed to the token passes the
   * {@link BackendHandoff}, so the engine can take the lock at once and claim its full ttl with
   * `extend` (at its first renewal, or at once without renewal); without it, the engine claims it
   * with another `acquire`.
   *
   * A wake-up with `recheckAfter` (ms) and no handoff says "nothing for you yet, but try again no
   * later than this": Redis sends it to the waiter queued right behind one a lock was just
   * reserved for, so that a reserved waiter that never claims (frozen, or gone without its
   * connection closing) delays the next one by the claim window, not by the old holder's ttl.
   */
  onWake(token: string, listener: WakeListener): Unsubscribe;

  /**
   * Optional: calls `listener` as soon as the backend itself learns that grants ended (for
   * example a session lease expired), so holders hear of the loss before anyone else can be
   * granted the lock, without waiting for their next extension. Backends without such knowledge
   * omit it; the engine then relies on `extend` and the local validity deadline.
   */
  onLost?(listener: (event: BackendLossEvent) => void): Unsubscribe;

  /**
   * Optional: the instant, in monotonic ms (`performance.now()`), until which a lease shared by
   * every grant of this backend is known to be alive (etcd: the session lease, from the last
   * answered keep-alive, less a margin). Read by the engine whenever a lock's validity is checked
   * (`lock.held`, `lock.signal`, renewals), so a holder whose event loop stalled past it sees its
   * locks lost at once, before a timer could tell it. `Infinity` or absent: no such lease.
   */
  leaseDeadline?(): number;

  /**
   * Releases the resources this backend opened itself (connections, timers, leases). Called on
   * application shutdown only for backends the module created; a backend instance the user
   * passed in is left to the user.
   */
  close?(): Promise<void>;
}
