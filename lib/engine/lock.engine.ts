import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type {
  BackendHandoff,
  BackendLockRef,
  LockBackend,
} from '../backends/lock-backend.interface';
import { LockBackendError } from '../errors/lock-backend.error';
import { LockError } from '../errors/lock.error';
import { LockNotAcquiredError } from '../errors/lock-not-acquired.error';
import type { AcquireOptions } from './acquire-options.interface';
import { monotonicNow } from './clock';
import { BackgroundTasks } from './background.tasks';
import { GrantedLock, LockOwner, validityDeadline } from './granted.lock';
import { LockContext } from './lock.context';
import type { Lock } from './lock.interface';
import { assertValidKey, LockKeys, normalizeKeys } from './lock-key.validator';
import { assertKnownOptions, assertOptionalBoolean, toTtl, toWait } from './lock-options.validator';
import { ReentrantLock } from './reentrant.lock';
import { RenewalScheduler } from './renewal.scheduler';
import { WakeWaiter } from './wake.waiter';

/** The options `acquire`, `tryAcquire` and `withLock` take. */
const ACQUIRE_OPTIONS = ['ttl', 'wait', 'signal', 'renew'] as const;

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
  private readonly tasks: BackgroundTasks;
  /** Own grants, by owner token, so a backend's loss report finds them. */
  private readonly held = new Map<string, GrantedLock>();
  private readonly stopLossReports: (() => void) | undefined;
  private readonly shutdown$ = new AbortController();
  private shuttingDown: Promise<void> | undefined;
  /** See {@link LockOwner.leaseDeadline}; bound once, read on every validity check. */
  readonly leaseDeadline: () => number;

  constructor(
    readonly backend: LockBackend,
    readonly defaults: EngineDefaults,
    private readonly logger: EngineLogger,
  ) {
    this.scheduler = new RenewalScheduler(backend, logger);
    this.tasks = new BackgroundTasks(logger);
    const lease = backend.leaseDeadline?.bind(backend);
    this.leaseDeadline = lease ? () => lease() : () => Infinity;
    // Every parked waiter listens to this signal; thousands may wait at once.
    setMaxListeners(0, this.shutdown$.signal);
    this.stopLossReports = backend.onLost?.((event) => {
      for (const ref of event.locks)
        this.held.get(ref.token)?.lose(event.reason, { cause: event.cause, mayHold: false });
    });
  }

  /** Clean-up calls still running or waiting to be retried in the background. */
  get pendingCleanups(): number {
    return this.tasks.size;
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
    assertKnownOptions(options, ACQUIRE_OPTIONS, 'lock options');
    const userKeys = normalizeKeys(keys);
    const limit = this.backend.maxKeys;
    if (limit !== undefined && userKeys.length > limit) {
      throw new TypeError(
        `a lock on the ${this.backend.name} backend takes at most ${limit} keys, got ${userKeys.length}`,
      );
    }
    const ttl = options.ttl === undefined ? this.defaults.ttl : toTtl(options.ttl, 'ttl');
    const wait =
      options.wait === undefined
        ? mode === 'try'
          ? 0
          : this.defaults.wait
        : toWait(options.wait, 'wait');
    assertOptionalBoolean(options.renew, 'renew');
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
   * Stops renewals, cancels waits and releases every held lock, once each; work still holding one
   * sees it lost (`LockLostError`). Resolves when every release and background clean-up has
   * settled, so the backend can be closed afterwards.
   */
  shutdown(): Promise<void> {
    this.shuttingDown ??= this.stop();
    return this.shuttingDown;
  }

  private async stop(): Promise<void> {
    this.shutdown$.abort(new LockError('the lock module is shutting down'));
    const held = [...this.held.values()];
    this.scheduler.stop();
    this.stopLossReports?.();
    // One try each from here on: shutdown must not wait for a backend that is down.
    this.tasks.stopRetrying();
    // Work still running under these locks loses them: its signal aborts with LockLostError and
    // withLock / @Locked report it, rather than a success that was not exclusive to the end. Each
    // lock releases itself exactly once (after an extension in flight, if any, answered).
    await Promise.allSettled(
      held.map((lock) => lock.lose('the application is shutting down', { mayHold: true })),
    );
    await this.tasks.drain();
  }

  // --- LockOwner: called by GrantedLock -------------------------------------------------------

  /** {@inheritDoc LockOwner.sendExtend} */
  sendExtend(lock: GrantedLock, ttl: number): Promise<boolean> {
    return this.call('extend', () => this.backend.extend([{ ...lock.ref, ttl }])).then(
      ([ok]) => ok === true,
    );
  }

  /** {@inheritDoc LockOwner.sendRelease} */
  sendRelease(lock: GrantedLock): Promise<boolean> {
    return this.track(this.call('release', () => this.backend.release(lock.ref)));
  }

  /** {@inheritDoc LockOwner.releaseOrphan} */
  releaseOrphan(lock: GrantedLock): Promise<void> {
    return this.tasks.run(
      `release of lock "${lock.key}"`,
      () => this.call('release', () => this.backend.release(lock.ref)),
      monotonicNow() + lock.ttl,
    );
  }

  /** {@inheritDoc LockOwner.watch} */
  watch(call: Promise<unknown>): void {
    this.tasks.watch(call);
  }

  /** {@inheritDoc LockOwner.forget} */
  forget(lock: GrantedLock): void {
    this.held.delete(lock.token);
    this.scheduler.delete(lock);
  }

  /** {@inheritDoc LockOwner.rescheduled} */
  rescheduled(lock: GrantedLock): void {
    this.scheduler.refresh(lock);
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
    // A hint to re-check by this monotonic time (see WakeListener's `recheckAfter`).
    let recheckAt = Infinity;
    // Subscribe before the first attempt: a release that hands us the lock must find us listening.
    const unsubscribe =
      wait > 0
        ? this.backend.onWake(ref.token, (offer, recheckAfter) => {
            if (!offer && recheckAfter !== undefined && recheckAfter >= 0) {
              recheckAt = Math.min(recheckAt, monotonicNow() + recheckAfter);
              waiter?.recheckBy(recheckAt);
              return;
            }
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
        // A hint is about the state before this attempt; its answer supersedes it.
        recheckAt = Infinity;
        attempt++;
        sentAt = monotonicNow();
        const queueFor = wait > 0 ? Math.max(1, Math.ceil(deadline - sentAt)) : 0;
        leftState = true;
        const request = { keys: ref.keys, token: ref.token, ttl, queueFor, attempt };
        // Tracked: shutdown waits for it, so a grant it brings is cleaned up before the close.
        const result = await this.track(this.call('acquire', () => this.backend.acquire(request)));
        let lock: GrantedLock | undefined;
        if (result.acquired) {
          lock = this.hold(keys, ref, result.fencingTokens, ttl, renew, sentAt, ttl);
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
            await waiter.park(Math.min(recheckAt, monotonicNow() + result.retryAfter, deadline));
          } else if (remaining <= 0 && !handoff) {
            break;
          }
          if (handoff) lock = this.takeHandoff(keys, ref, handoff, ttl, renew, sentAt);
        }
        if (lock) {
          leftState = false;
          if (signal?.aborted || this.shutdown$.signal.aborted) {
            // Never returned: drop it, and let `cancel` free it.
            lock.discard();
            this.cancelInBackground(ref, ttl);
            signal?.throwIfAborted();
            this.shutdown$.signal.throwIfAborted();
          }
          return lock;
        }
      }
    } finally {
      unsubscribe?.();
      // The caller's answer does not wait for the clean-up: it runs (and is retried) behind it.
      if (leftState) this.cancelInBackground(ref, Math.max(ttl, wait));
    }
    throw new LockNotAcquiredError(keys[0], keys, Math.round(monotonicNow() - started), retryAfter);
  }

  private hold(
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
    const lock = this.hold(keys, ref, handoff.fencingTokens, ttl, renew, sentAt, validFor);
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
      await lock.extend(ttl);
    } catch (err) {
      if (lock.held)
        this.logger.warn(
          `could not claim handed-over lock "${lock.key}": ${(err as Error)?.message}`,
        );
    }
  }

  /**
   * Removes what an acquisition that returned no lock may have left (a queue entry, a grant whose
   * answer was lost), retried until it would have expired by itself, `lifetime` ms from now.
   */
  private cancelInBackground(ref: BackendLockRef, lifetime: number): void {
    void this.tasks.run(
      'clean-up of an abandoned acquisition',
      () => this.call('cancel', () => this.backend.cancel(ref)),
      monotonicNow() + lifetime,
    );
  }

  /** Keeps a caller-awaited backend call in view of shutdown, which settles it before closing. */
  private track<T>(promise: Promise<T>): Promise<T> {
    this.tasks.watch(promise);
    return promise;
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
