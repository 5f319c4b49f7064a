import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type {
  BackendHandoff,
  BackendLockRef,
  LockBackend,
} from '../backends/lock-backend.interface';
import { LockBackendError } from '../errors/lock-backend.error';
import { LockError } from '../errors/lock.error';
import { LockLostError } from '../errors/lock-lost.error';
import { LockNotAcquiredError } from '../errors/lock-not-acquired.error';
import type { AcquireOptions } from './acquire-options.interface';
import { monotonicNow } from './clock';
import { GrantedLock, LockOwner, validityDeadline } from './granted.lock';
import { LockContext } from './lock.context';
import type { Lock } from './lock.interface';
import { assertValidKey, LockKeys, normalizeKeys } from './lock-key.validator';
import { assertTtl, assertWait } from './lock-options.validator';
import { ReentrantLock } from './reentrant.lock';
import { RenewalScheduler } from './renewal.scheduler';
import { WakeWaiter } from './wake.waiter';

/** Delay, in ms, before the one retry of a failed clean-up of an abandoned acquisition. */
const CANCEL_RETRY_DELAY = 1000;

/** Defaults an engine applies to every call. */
export interface EngineDefaults {
  /** Prepended to every key sent to the backend. */
  readonly keyPrefix: string;
  /** Default ttl in ms. */
  readonly ttl: number;
  /** Default wait in ms. */
  readonly wait: number;
}

/** Where the engine reports what it cannot throw to a caller. */
export interface EngineLogger {
  warn(message: string): void;
  error(message: string): void;
}

/**
 * The backend-agnostic lock engine: validation, waiting with server wake-ups, renewal, loss
 * detection, reentrancy and shutdown. Backends only make single attempts.
 */
export class LockEngine implements LockOwner {
  readonly context = new LockContext();
  private readonly scheduler: RenewalScheduler;
  /** Own grants, by owner token, so a backend's loss report finds them. */
  private readonly held = new Map<string, GrantedLock>();
  private readonly stopLossReports: (() => void) | undefined;
  private readonly shutdown$ = new AbortController();

  constructor(
    readonly backend: LockBackend,
    readonly defaults: EngineDefaults,
    private readonly logger: EngineLogger,
  ) {
    this.scheduler = new RenewalScheduler(backend, logger, (lock) => this.releaseOrphan(lock));
    // Every parked waiter listens to this signal; thousands may wait at once.
    setMaxListeners(0, this.shutdown$.signal);
    this.stopLossReports = backend.onLost?.((event) => {
      for (const ref of event.locks)
        this.held.get(ref.token)?.lost(event.reason, event.cause, true);
    });
  }

  /** Number of grants this engine currently holds (reentrant handles excluded). */
  get heldCount(): number {
    return this.held.size;
  }

  /**
   * Acquires `keys`, waiting up to `wait` ms. In `try` mode a busy lock resolves `null` instead of
   * throwing `LockNotAcquiredError`.
   */
  async acquire(keys: LockKeys, options: AcquireOptions, mode: 'wait'): Promise<Lock>;
  async acquire(keys: LockKeys, options: AcquireOptions, mode: 'try'): Promise<Lock | null>;
  async acquire(
    keys: LockKeys,
    options: AcquireOptions,
    mode: 'wait' | 'try',
  ): Promise<Lock | null> {
    const userKeys = normalizeKeys(keys);
    const ttl = options.ttl ?? this.defaults.ttl;
    assertTtl(ttl, 'ttl');
    const wait = options.wait ?? (mode === 'try' ? 0 : this.defaults.wait);
    assertWait(wait, 'wait');
    if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
      throw new TypeError('signal must be an AbortSignal');
    }
    options.signal?.throwIfAborted();
    this.shutdown$.signal.throwIfAborted();

    const chain = this.context.heldKeys();
    const inherited = new Map<string, Lock>();
    for (const key of userKeys) {
      const holder = chain.get(key);
      if (holder) inherited.set(key, holder);
    }
    if (inherited.size === userKeys.length)
      return new ReentrantLock(userKeys, inherited, undefined);
    const missing = userKeys.filter((key) => !inherited.has(key));
    let own: GrantedLock;
    try {
      own = await this.grant(missing, ttl, wait, options.renew ?? true, options.signal);
    } catch (err) {
      if (mode === 'try' && err instanceof LockNotAcquiredError) return null;
      throw err;
    }
    return inherited.size > 0 ? new ReentrantLock(userKeys, inherited, own) : own;
  }

  /**
   * Runs `fn` holding `lock`, as `current()` of its async chain, then releases it. The work's own
   * error wins; otherwise a loss during the work surfaces as `LockLostError`.
   */
  async runHolding<T>(lock: Lock, fn: () => T | Promise<T>): Promise<T> {
    let result: T;
    try {
      result = await this.context.run(lock, fn);
    } catch (err) {
      await this.releaseQuietly(lock);
      throw err;
    }
    await this.releaseAfterWork(lock);
    return result;
  }

  /**
   * Releases after successful work: a lost lock throws (the work ran without exclusivity and the
   * caller must know); an unreachable backend is logged, since the lock then expires on its own.
   */
  async releaseAfterWork(lock: Lock): Promise<void> {
    try {
      await lock.release();
    } catch (err) {
      if (err instanceof LockBackendError) {
        this.logger.warn(`${err.message}; lock "${lock.key}" will expire after its ttl`);
        return;
      }
      throw err;
    }
  }

  /** Releases after failed work without masking the work's error. */
  async releaseQuietly(lock: Lock): Promise<void> {
    try {
      await lock.release();
    } catch (err) {
      this.logger.warn(
        `release of lock "${lock.key}" after a failed call: ${(err as Error)?.message}`,
      );
    }
  }

  /** Whether `key` is held by anyone, according to the backend. */
  async isLocked(key: string): Promise<boolean> {
    assertValidKey(key);
    const info = await this.call('inspect', () =>
      this.backend.inspect(this.defaults.keyPrefix + key),
    );
    return info.held;
  }

  /** The innermost lock held by the current async call chain. */
  current(): Lock | undefined {
    return this.context.current();
  }

  /**
   * Stops renewals, cancels waits and releases every held lock; work still holding one sees it
   * lost (`LockLostError`).
   */
  async shutdown(): Promise<void> {
    if (this.shutdown$.signal.aborted) return;
    this.shutdown$.abort(new LockError('the lock module is shutting down'));
    const held = [...this.held.values()];
    this.scheduler.stop();
    this.stopLossReports?.();
    // Work still running under these locks loses them: its signal aborts with LockLostError and
    // withLock / @Locked report it, rather than a success that was not exclusive to the end.
    for (const lock of held) lock.lost('the application is shutting down', undefined, true);
    const results = await Promise.allSettled(
      held.map((lock) => this.call('release', () => this.backend.release(lock.ref))),
    );
    results.forEach((result, i) => {
      if (result.status === 'rejected') {
        this.logger.warn(
          `release of lock "${held[i].key}" at shutdown: ${(result.reason as Error)?.message}`,
        );
      }
    });
  }

  // --- LockOwner: called by GrantedLock -------------------------------------------------------

  /** Extends one lock now (a manual `lock.extend()`), owner-checked. */
  async extendLock(lock: GrantedLock, ttl: number): Promise<void> {
    assertTtl(ttl, 'ttl');
    // One extension at a time per lock (see GrantedLock.pending); each is bounded in time.
    for (let i = 0; lock.pending && i < 100; i++) await lock.pending;
    if (!lock.held) throw lock.lossError ?? new LockError(`Lock "${lock.key}" is no longer held`);
    const sentAt = monotonicNow();
    const call = this.call('extend', () => this.backend.extend([{ ...lock.ref, ttl }]));
    const settled = call.then(
      () => undefined,
      () => undefined,
    );
    lock.pending = settled;
    let ok: boolean;
    try {
      [ok] = await call;
    } finally {
      if (lock.pending === settled) lock.pending = undefined;
    }
    if (!lock.held) {
      if (ok && lock.mayBeOrphaned) this.releaseOrphan(lock);
      throw lock.lossError ?? new LockError(`Lock "${lock.key}" is no longer held`);
    }
    if (!ok) {
      lock.lost(
        'it expired or was taken by another owner before it could be extended',
        undefined,
        true,
      );
      throw lock.lossError as LockLostError;
    }
    lock.renewed(sentAt, ttl);
    this.scheduler.refresh(lock);
  }

  /** Releases one lock, owner-checked; a lock found gone is reported lost. */
  async releaseLock(lock: GrantedLock): Promise<void> {
    let ok: boolean;
    try {
      ok = await this.call('release', () => this.backend.release(lock.ref));
    } catch (err) {
      // Stop renewing so the lock expires after its ttl; nothing is leaked without a TTL.
      lock.released();
      throw err;
    }
    if (!ok) {
      lock.lost(
        'it had expired or been taken by another owner before it was released',
        undefined,
        true,
      );
      throw lock.lossError as LockLostError;
    }
    lock.released();
  }

  /** Stops tracking a lock that was released or lost. */
  forget(lock: GrantedLock): void {
    this.held.delete(lock.token);
    this.scheduler.delete(lock);
    // Lost by the clock alone (or a multi-key lock found partly gone): the backend may still hold
    // it, or part of it, for nobody. Release is owner-checked, so keys others took stay theirs.
    if (lock.mayBeOrphaned || (lock.lossError && lock.ref.keys.length > 1))
      this.releaseOrphan(lock);
  }

  /** Best-effort, owner-checked release of a grant this engine no longer tracks. */
  private releaseOrphan(lock: GrantedLock): void {
    this.call('release', () => this.backend.release(lock.ref)).catch(() => undefined);
  }

  // --- internals -------------------------------------------------------------------------------

  private async grant(
    keys: readonly string[],
    ttl: number,
    wait: number,
    renew: boolean,
    signal: AbortSignal | undefined,
  ): Promise<GrantedLock> {
    const ref: BackendLockRef = {
      keys: keys.map((key) => this.defaults.keyPrefix + key),
      token: randomUUID(),
    };
    const started = monotonicNow();
    const deadline = started + wait;
    // Created on the first busy answer: most acquisitions never wait.
    let waiter: WakeWaiter | undefined;
    let wokenEarly = false;
    let attempt = 0;
    let sentAt = 0;
    let handoff: BackendHandoff | undefined;
    // Subscribe before the first attempt: a release that hands us the lock must find us listening.
    const unsubscribe =
      wait > 0
        ? this.backend.onWake(ref.token, (offer) => {
            // Only an offer for our latest attempt is known to postdate that attempt's send time.
            if (offer && offer.attempt === attempt && offer.fencingTokens.length === keys.length) {
              handoff = offer;
            }
            if (waiter) waiter.wake();
            else wokenEarly = true;
          })
        : undefined;
    // Whether the backend may hold state for this token (a queue entry, or a grant whose answer
    // was lost): if so, and no lock is returned, `cancel` must clean it up.
    let leftState = false;
    let retryAfter: number | undefined;
    try {
      // Bounded by the deadline; every round parks at least 1 ms or awaits a backend round trip.
      for (;;) {
        waiter?.reset();
        wokenEarly = false;
        handoff = undefined;
        attempt++;
        sentAt = monotonicNow();
        const queueFor = wait > 0 ? Math.max(1, Math.ceil(deadline - sentAt)) : 0;
        leftState = true;
        const request = { keys: ref.keys, token: ref.token, ttl, queueFor, attempt };
        const result = await this.call('acquire', () => this.backend.acquire(request));
        let lock: GrantedLock | undefined;
        if (result.acquired) {
          lock = this.track(keys, ref, result.fencingTokens, ttl, renew, sentAt, ttl);
        } else {
          leftState = queueFor > 0; // a busy try without queueing leaves no trace
          retryAfter = result.retryAfter;
          const remaining = deadline - monotonicNow();
          if (remaining > 0 && !handoff) {
            if (!waiter) {
              waiter = new WakeWaiter(
                signal ? [signal, this.shutdown$.signal] : [this.shutdown$.signal],
              );
              if (wokenEarly) waiter.wake();
            }
            await waiter.park(Math.max(1, Math.min(result.retryAfter, remaining)));
          } else if (remaining <= 0 && !handoff) {
            break;
          }
          if (handoff) lock = this.takeHandoff(keys, ref, handoff, ttl, renew, sentAt);
        }
        if (lock) {
          leftState = false;
          if (signal?.aborted || this.shutdown$.signal.aborted) {
            // Never returned: drop it, and let `cancel` free it (it retries once on failure).
            lock.released();
            await this.cancelQuietly(ref);
            signal?.throwIfAborted();
            this.shutdown$.signal.throwIfAborted();
          }
          return lock;
        }
      }
    } finally {
      unsubscribe?.();
      if (leftState) await this.cancelQuietly(ref);
    }
    throw new LockNotAcquiredError(keys[0], keys, Math.round(monotonicNow() - started), retryAfter);
  }

  private track(
    keys: readonly string[],
    ref: BackendLockRef,
    fencingTokens: readonly number[],
    ttl: number,
    renew: boolean,
    sentAt: number,
    validFor: number,
  ): GrantedLock {
    const lock = new GrantedLock(this, keys, ref, fencingTokens, ttl, renew, sentAt, validFor);
    this.held.set(ref.token, lock);
    this.scheduler.add(lock);
    return lock;
  }

  /**
   * Takes a lock a release handed to us, without another round trip: the reservation lasts at
   * least `handoff.ttl` from `sentAt` (our attempt the handoff served was sent then), and we claim
   * the full ttl in the background. Declines when too little of the reservation is left, in which
   * case the next attempt claims it the usual way.
   */
  private takeHandoff(
    keys: readonly string[],
    ref: BackendLockRef,
    handoff: BackendHandoff,
    ttl: number,
    renew: boolean,
    sentAt: number,
  ): GrantedLock | undefined {
    const validFor = Math.min(handoff.ttl, ttl);
    if (validityDeadline(sentAt, validFor) - monotonicNow() < validFor / 2) return undefined;
    const lock = this.track(keys, ref, handoff.fencingTokens, ttl, renew, sentAt, validFor);
    // A reservation shorter than the ttl is claimed now; a full one is just renewed as usual.
    if (validFor < ttl) void this.claim(lock, ttl);
    return lock;
  }

  /**
   * Extends a handed-over lock to its full ttl. On failure the renewal scheduler retries before
   * the reservation ends (it schedules from the reservation), and the validity deadline holds.
   */
  private async claim(lock: GrantedLock, ttl: number): Promise<void> {
    try {
      await this.extendLock(lock, ttl);
    } catch (err) {
      if (lock.held)
        this.logger.warn(
          `could not claim handed-over lock "${lock.key}": ${(err as Error)?.message}`,
        );
    }
  }

  private async cancelQuietly(ref: BackendLockRef, retry = true): Promise<void> {
    try {
      await this.call('cancel', () => this.backend.cancel(ref));
    } catch (err) {
      // Whatever is left expires by itself (a queue entry with its wait, a lost grant with its
      // ttl); one later retry shortens that when the backend was only briefly unreachable.
      this.logger.warn(`could not clean up an abandoned acquisition: ${(err as Error)?.message}`);
      if (retry) setTimeout(() => void this.cancelQuietly(ref, false), CANCEL_RETRY_DELAY).unref();
    }
  }

  /** Runs one backend call, turning anything that is not already a LockError into a LockBackendError. */
  private call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    // Not an async function: this sits on every backend call, and a plain promise chain is
    // cheaper than an extra async frame.
    let promise: Promise<T>;
    try {
      promise = fn();
    } catch (err) {
      return Promise.reject(this.backendError(operation, err));
    }
    return promise.then(undefined, (err: unknown) => {
      throw this.backendError(operation, err);
    });
  }

  private backendError(operation: string, err: unknown): Error {
    if (err instanceof LockError) return err;
    const message = (err as Error)?.message ?? String(err);
    return new LockBackendError(this.backend.name, operation, message, { cause: err });
  }
}
