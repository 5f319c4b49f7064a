import { errorMessage } from '../errors/error.message';
import { AsyncResource } from 'node:async_hooks';
import { setMaxListeners } from 'node:events';
import type { BackendLockRef, LockBackend } from '../backends/lock-backend.interface';
import { LockBackendError } from '../errors/lock-backend.error';
import { LockError } from '../errors/lock.error';
import { LockShutdownError } from '../errors/lock-shutdown.error';
import { LockNotAcquiredError } from '../errors/lock-not-acquired.error';
import type { AcquireOptions, WithLockOptions } from './acquire-options.interface';
import { LockEventBus } from '../observability/lock-event.bus';
import type { LockCallInfo, LockInstrumentation } from '../observability/lock.instrumentation';
import { monotonicNow } from './clock';
import { BackgroundTasks } from './background.tasks';
import { acquireGrant, AcquireHost } from './acquire.loop';
import { GrantedLock, LockOwner, validityDeadline } from './granted.lock';
import { LockContext } from './lock.context';
import type { Lock } from './lock.interface';
import { assertValidKey, LockKeys, normalizeKeys } from './lock-key.validator';
import {
  assertKnownOptions,
  assertOptionalBoolean,
  toName,
  toTtl,
  toWait,
} from './lock-options.validator';
import { ReentrantLock } from './reentrant.lock';
import { RenewalScheduler } from './renewal.scheduler';

/** The options `acquire` and `tryAcquire` take. */
const ACQUIRE_OPTIONS = ['ttl', 'wait', 'signal', 'renew', 'name', 'maxHold'] as const;
/** The options `withLock` and `@Locked` take. */
const WORK_OPTIONS = [...ACQUIRE_OPTIONS, 'holdAtLeast'] as const;

/**
 * How a call acquires: `wait` and `try` as `acquire` and `tryAcquire`; `work` waits like `wait`
 * for `withLock` and `@Locked` (which also take `holdAtLeast`); `skip` is `work` for a
 * `@Locked({ onBusy: 'skip' })` method, whose refusals are reported as skipped rather than busy.
 */
export type AcquireMode = 'wait' | 'try' | 'work' | 'skip';

/** What the engine remembers of a grant while someone observes it (events, hold times). */
interface Observation {
  readonly name: string | undefined;
  /** Monotonic ms of the grant. */
  readonly at: number;
  /** The grant's number in its events. */
  readonly grant: number;
}

/** A lock kept after its work ended (`holdAtLeast`): its release timer, and until when. */
interface Lingering {
  readonly timer: NodeJS.Timeout;
  /** Monotonic ms. */
  readonly until: number;
}

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
export class LockEngine implements LockOwner, AcquireHost {
  readonly context = new LockContext();
  private readonly scheduler: RenewalScheduler;
  private readonly tasks: BackgroundTasks;
  /** Own grants, by owner token, so a backend's loss report finds them. */
  private readonly held = new Map<string, GrantedLock>();
  private readonly stopLossReports: (() => void) | undefined;
  private readonly shutdown$ = new AbortController();
  /** Aborted when shutdown starts: new acquisitions are refused and parked waiters give up. */
  readonly stopping: AbortSignal = this.shutdown$.signal;
  private shuttingDown: Promise<void> | undefined;
  /** Resolves the shutdown's wait for the last held lock to be released. */
  private onNoneHeld: (() => void) | undefined;
  /** Told of every grant as it is made (the testing kit records them). */
  private readonly grantListeners: ((lock: Lock, ttl: number) => void)[] = [];
  /** See {@link LockOwner.leaseDeadline}; bound once, read on every validity check. */
  readonly leaseDeadline: () => number;
  /** Lifecycle events; costs nothing while nobody listens. */
  readonly events: LockEventBus;
  /** Grants made while someone listened to events, for their names and hold times. */
  private readonly observed = new Map<GrantedLock, Observation>();
  private instrumentation: LockInstrumentation | undefined;
  /** `maxHold` timers, by lock. */
  private readonly maxHoldTimers = new Map<GrantedLock, NodeJS.Timeout>();
  /** Monotonic ms until which a lock must stay held (`holdAtLeast`), by lock. */
  private readonly holdUntil = new Map<GrantedLock, number>();
  /** Locks whose work ended and which stay held until their `holdAtLeast` has passed. */
  private readonly lingering = new Map<GrantedLock, Lingering>();
  /** Numbers the grants observed by events, so a listener can match each end to its start. */
  private grants = 0;
  /**
   * The engine's own async context, made with it: its timers (renewal, maxHold, holdAtLeast) run
   * in it, not in the context of whichever caller happened to arm them (a request, a span).
   */
  private readonly scope = new EngineScope('DistributedLockEngine');

  constructor(
    readonly backend: LockBackend,
    readonly defaults: EngineDefaults,
    readonly logger: EngineLogger,
  ) {
    this.scheduler = new RenewalScheduler(backend, logger, (callback, ms) =>
      this.inScope(setTimeout, callback, ms),
    );
    this.tasks = new BackgroundTasks(logger);
    this.events = new LockEventBus(logger);
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
   * Installs `instrumentation` around every acquisition and locked section from now on, in place
   * of the previous one; returns the function that removes it.
   */
  instrument(instrumentation: LockInstrumentation): () => void {
    this.instrumentation = instrumentation;
    return () => {
      if (this.instrumentation === instrumentation) this.instrumentation = undefined;
    };
  }

  /**
   * Acquires `keys`, waiting up to `wait` ms. In `try` mode a busy lock resolves `null` instead of
   * throwing `LockNotAcquiredError`.
   */
  async acquire(
    keys: LockKeys,
    options: WithLockOptions,
    mode: 'wait' | 'work' | 'skip',
  ): Promise<Lock>;
  async acquire(keys: LockKeys, options: AcquireOptions, mode: 'try'): Promise<Lock | null>;
  async acquire(keys: LockKeys, options: WithLockOptions, mode: AcquireMode): Promise<Lock | null> {
    const work = mode === 'work' || mode === 'skip';
    assertKnownOptions(options, work ? WORK_OPTIONS : ACQUIRE_OPTIONS, 'lock options');
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
    const name = options.name === undefined ? undefined : toName(options.name, 'name');
    const maxHold = options.maxHold === undefined ? undefined : toTtl(options.maxHold, 'maxHold');
    const holdAtLeast =
      options.holdAtLeast === undefined ? 0 : toWait(options.holdAtLeast, 'holdAtLeast');
    if (holdAtLeast > 0) assertHoldAtLeast(holdAtLeast, maxHold, ttl, options.renew ?? true);
    options.signal?.throwIfAborted();

    const chain = this.context.heldKeys();
    // Outside any lock (the usual case) nothing is inherited: one shared empty map.
    let inherited = chain;
    if (chain.size > 0) {
      const found = new Map<string, Lock>();
      for (const key of userKeys) {
        const holder = chain.get(key);
        if (holder) found.set(key, holder);
      }
      inherited = found;
    }
    // Work running during the shutdown grace may still re-enter what it holds.
    if (inherited.size === userKeys.length)
      return new ReentrantLock(userKeys, inherited, undefined);
    this.shutdown$.signal.throwIfAborted();
    // The usual case inherits nothing: no second array (it would live as long as the lock).
    const missing = inherited.size === 0 ? userKeys : userKeys.filter((key) => !inherited.has(key));
    // The keys this call takes itself: inherited ones are held already, whatever their slot.
    const assertKeys = this.backend.assertKeys;
    if (assertKeys) assertKeys(missing.map((key) => this.defaults.keyPrefix + key));
    // Read once: a listener that subscribes meanwhile sees the next acquisitions, whole.
    const observing = this.events.active;
    const startedAt = observing ? monotonicNow() : 0;
    const request = {
      keys: missing,
      ttl,
      wait,
      renew: options.renew ?? true,
      signal: options.signal,
    };
    const instrumentation = this.instrumentation;
    let own: GrantedLock;
    try {
      own = await (instrumentation
        ? instrumentation.acquire(this.callInfo(name, userKeys), () => acquireGrant(this, request))
        : acquireGrant(this, request));
    } catch (err) {
      if (observing) this.reportRefusal(err, name, userKeys, startedAt, mode === 'skip');
      if (mode === 'try' && err instanceof LockNotAcquiredError) return null;
      throw err;
    }
    // Instrumentation may add turns between the grant and here: a shutdown or a loss in between
    // must not hand out a lock that is gone (the acquire loop checks this itself otherwise).
    if (instrumentation && !own.live) {
      throw this.stopping.aborted ? (this.stopping.reason as Error) : own.lossError;
    }
    if (observing) {
      const at = monotonicNow();
      const grant = ++this.grants;
      this.observed.set(own, { name, at, grant });
      this.events.emit('acquired', {
        name,
        keys: own.keys,
        backend: this.backend.name,
        grant,
        waited: at - startedAt,
      });
    }
    if (maxHold !== undefined) this.limitHold(own, maxHold);
    if (holdAtLeast > 0) this.holdUntil.set(own, monotonicNow() + holdAtLeast);
    return inherited.size > 0 ? new ReentrantLock(userKeys, inherited, own) : own;
  }

  /** Reports a refused or failed acquisition to event listeners. */
  private reportRefusal(
    err: unknown,
    name: string | undefined,
    keys: readonly string[],
    startedAt: number,
    skipping: boolean,
  ): void {
    const backend = this.backend.name;
    if (err instanceof LockNotAcquiredError) {
      // A skipped call is reported once, as skipped, by the service.
      if (!skipping)
        this.events.emit('busy', {
          name,
          keys,
          backend,
          waited: monotonicNow() - startedAt,
          error: err,
        });
    } else if (err instanceof LockBackendError) {
      this.events.emit('error', { name, keys, backend, operation: 'acquire', error: err });
    }
  }

  /** The call as instrumentation sees it. */
  private callInfo(name: string | undefined, keys: readonly string[]): LockCallInfo {
    return { name, keys, backend: this.backend.name };
  }

  /** Ends `lock` once it has been held for `maxHold` ms (if it is still held then). */
  private limitHold(lock: GrantedLock, maxHold: number): void {
    const timer = this.inScope(
      setTimeout,
      () => {
        this.maxHoldTimers.delete(lock);
        // A release already on the wire ends it anyway, and must not be reported as a loss.
        if (lock.live) void lock.lose(`it reached its maxHold of ${maxHold} ms`, { mayHold: true });
      },
      maxHold,
    );
    // The lock has its ttl on the backend: this timer must not keep a process alive.
    timer.unref();
    this.maxHoldTimers.set(lock, timer);
  }

  /**
   * Runs `fn` holding `lock`, as `current()` of its async chain, then releases it. The work's own
   * error wins; otherwise a loss during the work surfaces as `LockLostError`. `handOver` may take
   * over a result whose work goes on after it returns (an Observable): it returns what the caller
   * gets instead and becomes responsible for the release. `name` labels the instrumentation's
   * span, which `traced: false` leaves out (an Observable's work outlives the call).
   */
  runHolding<T>(
    lock: Lock,
    fn: () => T | Promise<T>,
    handOver?: (result: T) => T | undefined,
    name?: string,
    traced = true,
  ): Promise<T> {
    const instrumentation = this.instrumentation;
    if (!instrumentation || !traced) return this.holdWhile(lock, fn, handOver);
    // The release is part of the locked section's span: a lock lost by then fails it.
    return instrumentation.work(this.callInfo(name, lock.keys), fencingTokenOf(lock), () =>
      this.holdWhile(lock, fn, handOver),
    );
  }

  private async holdWhile<T>(
    lock: Lock,
    fn: () => T | Promise<T>,
    handOver: ((result: T) => T | undefined) | undefined,
  ): Promise<T> {
    let result: T;
    try {
      result = await this.context.run(lock, fn);
    } catch (err) {
      await this.releaseQuietly(lock);
      throw err;
    }
    const continued = handOver?.(result);
    if (continued !== undefined) return continued;
    await this.releaseAfterWork(lock);
    return result;
  }

  /**
   * Releases after successful work: a lost lock throws (the work ran without exclusivity and the
   * caller must know); an unreachable backend is logged, since the lock then expires on its own.
   */
  async releaseAfterWork(lock: Lock): Promise<void> {
    if (this.lingers(lock)) return;
    try {
      await lock.release();
    } catch (err) {
      if (err instanceof LockBackendError) {
        this.logger.warn(`${err.message}; lock "${lock.key}" is left to end on the backend`);
        return;
      }
      throw err;
    }
  }

  /** Releases after failed work without masking the work's error. */
  async releaseQuietly(lock: Lock): Promise<void> {
    if (this.lingers(lock)) return;
    try {
      await lock.release();
    } catch (err) {
      this.logger.warn(`release of lock "${lock.key}" after a failed call: ${errorMessage(err)}`);
    }
  }

  /**
   * When `lock` was taken with `holdAtLeast` and that time has not passed, keeps it held (and
   * renewed) until then and returns true; its work is over, so it is then released quietly.
   */
  private lingers(handle: Lock): boolean {
    if (this.holdUntil.size === 0) return false;
    // A partly reentrant handle lingers with the grant it made itself.
    const lock = handle instanceof ReentrantLock ? handle.ownGrant : handle;
    if (!(lock instanceof GrantedLock)) return false;
    const until = this.holdUntil.get(lock);
    if (until === undefined) return false;
    this.holdUntil.delete(lock);
    const left = until - monotonicNow();
    if (left < 1 || !lock.held) return false;
    if (this.stopping.aborted) {
      // No lingering during shutdown, which waits for nothing left to do: see leaveUntil.
      this.tasks.watch(this.leaveUntil(lock, until));
      return true;
    }
    // Lingering ends by holdAtLeast <= maxHold: the maxHold timer must not turn it into a loss.
    this.clearMaxHold(lock);
    const timer = this.inScope(
      setTimeout,
      () => {
        this.lingering.delete(lock);
        void this.releaseLingering(lock);
      },
      left,
    );
    // Not needed to keep the process alive: the lock then ends with its ttl (or etcd session).
    timer.unref();
    this.lingering.set(lock, { timer, until });
    return true;
  }

  /** Releases a lock whose holdAtLeast has passed; its work is long over and succeeded or not. */
  private async releaseLingering(lock: GrantedLock): Promise<void> {
    try {
      await lock.release();
    } catch (err) {
      this.logger.warn(
        `release of lock "${lock.key}" after its holdAtLeast: ${errorMessage(err)}; it ends with its ttl`,
      );
    }
  }

  /**
   * At shutdown, a lock that must stay held until `until` (holdAtLeast): where the backend keeps
   * locks by ttl, one extension to the time left, and then the process lets go of it without a
   * release, so a replica that restarts does not free a tick it ran; where locks live with a
   * session (etcd), which ends with the process, a release.
   */
  private async leaveUntil(lock: GrantedLock, until: number): Promise<void> {
    const left = Math.ceil(until - monotonicNow());
    if (left >= 1 && this.backend.leaseDeadline === undefined) {
      try {
        await lock.extend(left);
        lock.discard();
        return;
      } catch {
        // Lost or unreachable: the release below reports it, or the ttl ends it.
      }
    }
    await this.releaseLingering(lock);
  }

  private clearMaxHold(lock: GrantedLock): void {
    if (this.maxHoldTimers.size === 0) return;
    clearTimeout(this.maxHoldTimers.get(lock));
    this.maxHoldTimers.delete(lock);
  }

  /** Calls `arm(callback, ms)` (a timer function) in the engine's own async context. */
  private inScope(
    arm: (callback: () => void, ms: number) => NodeJS.Timeout,
    callback: () => void,
    ms: number,
  ): NodeJS.Timeout {
    return this.scope.runInAsyncScope(arm, undefined, callback, ms);
  }

  /** Calls `listener` with every grant (and its ttl) this engine makes from now on, reentrant handles excluded. */
  onGrant(listener: (lock: Lock, ttl: number) => void): () => void {
    this.grantListeners.push(listener);
    return () => {
      const at = this.grantListeners.indexOf(listener);
      if (at >= 0) this.grantListeners.splice(at, 1);
    };
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
   * From now on new acquisitions are refused with `LockShutdownError`, and callers waiting for a
   * lock give up with it. Locks already held are untouched. Idempotent.
   */
  refuseNewLocks(): void {
    if (!this.shutdown$.signal.aborted) this.shutdown$.abort(new LockShutdownError());
  }

  /**
   * Shuts down gracefully: refuses new acquisitions, then lets held locks run, renewed as usual,
   * until their work releases them or `grace` ms have passed. What is still held then is released,
   * once each, and its work sees it lost (`LockLostError`). Resolves when every release and
   * background clean-up has settled, so the backend can be closed afterwards. Idempotent: a
   * second call returns the first one's promise.
   */
  shutdown(grace = 0): Promise<void> {
    this.shuttingDown ??= this.stop(grace);
    return this.shuttingDown;
  }

  private async stop(grace: number): Promise<void> {
    this.refuseNewLocks();
    // Lingering locks (holdAtLeast) have no work left to wait for: see leaveUntil, below.
    if (grace > 0 && this.held.size > this.lingering.size) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.onNoneHeld = resolve;
        // Not unref'd: the process is shutting down and must not exit before this settles.
        timer = setTimeout(resolve, grace);
      });
      clearTimeout(timer);
      this.onNoneHeld = undefined;
    }
    const lingering = [...this.lingering];
    for (const [, { timer }] of lingering) clearTimeout(timer);
    this.lingering.clear();
    await Promise.allSettled(lingering.map(([lock, { until }]) => this.leaveUntil(lock, until)));
    const all = [...this.held.values()];
    // A release already on the wire decides for itself: released, or lost if it was too late.
    const releasing = all.filter((lock) => !lock.live);
    const held = all.filter((lock) => lock.live);
    await Promise.allSettled(releasing.map((lock) => lock.release()));
    this.scheduler.stop();
    this.stopLossReports?.();
    // One try each from here on: shutdown must not wait for a backend that is down.
    this.tasks.stopRetrying();
    // Work still running under these locks loses them: its signal aborts with LockLostError and
    // withLock / @Locked report it, rather than a success that was not exclusive to the end. Each
    // lock releases itself exactly once (after an extension in flight, if any, answered).
    await Promise.allSettled(
      held.map((lock) =>
        lock.lose(
          grace > 0
            ? `the application is shutting down and its ${grace} ms grace period ran out`
            : 'the application is shutting down',
          { mayHold: true },
        ),
      ),
    );
    await this.tasks.drain();
  }

  // --- LockOwner: called by GrantedLock -------------------------------------------------------

  /** {@inheritDoc LockOwner.sendExtend} */
  sendExtend(lock: GrantedLock, ttl: number): Promise<boolean> {
    return this.call('extend', () => this.backend.extend([{ ...lock.ref, ttl }])).then(([ok]) => {
      if (ok instanceof Error) throw this.backendError('extend', ok);
      return ok === true;
    });
  }

  /** {@inheritDoc LockOwner.sendRelease} */
  sendRelease(lock: GrantedLock): Promise<boolean> {
    const sent = this.track(this.call('release', () => this.backend.release(lock.ref)));
    if (this.observed.size === 0) return sent;
    const seen = this.observed.get(lock);
    if (!seen) return sent;
    return sent.catch((err: unknown) => {
      if (err instanceof LockBackendError) {
        this.events.emit('error', {
          name: seen.name,
          keys: lock.keys,
          backend: this.backend.name,
          grant: seen.grant,
          operation: 'release',
          error: err,
        });
      }
      throw err;
    });
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
    this.clearMaxHold(lock);
    if (this.lingering.size > 0) {
      clearTimeout(this.lingering.get(lock)?.timer);
      this.lingering.delete(lock);
    }
    if (this.holdUntil.size > 0) this.holdUntil.delete(lock);
    if (this.observed.size > 0) this.reportEnd(lock);
    if (this.held.size === this.lingering.size) this.onNoneHeld?.();
  }

  /** {@inheritDoc LockOwner.rescheduled} */
  rescheduled(lock: GrantedLock, outcome: unknown): void {
    this.scheduler.refresh(lock);
    if (this.observed.size === 0) return;
    const seen = this.observed.get(lock);
    if (!seen) return;
    const base = {
      name: seen.name,
      keys: lock.keys,
      backend: this.backend.name,
      grant: seen.grant,
    };
    if (outcome === true) {
      this.events.emit('extended', { ...base, held: monotonicNow() - seen.at, ttl: lock.ttl });
    } else if (outcome instanceof Error) {
      this.events.emit('error', {
        ...base,
        operation: 'extend',
        error: this.asBackendError('extend', outcome),
      });
    }
  }

  /** Reports the end of an observed grant: released, or lost. */
  private reportEnd(lock: GrantedLock): void {
    const seen = this.observed.get(lock);
    if (!seen) return;
    this.observed.delete(lock);
    const held = monotonicNow() - seen.at;
    const base = {
      name: seen.name,
      keys: lock.keys,
      backend: this.backend.name,
      grant: seen.grant,
      held,
    };
    const lost = lock.lossError;
    if (lost) this.events.emit('lost', { ...base, error: lost });
    else this.events.emit('released', base);
  }

  // --- AcquireHost: called by the acquire loop ------------------------------------------------

  /** {@inheritDoc AcquireHost.hold} */
  hold(
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
    for (const listener of this.grantListeners) listener(lock, ttl);
    return lock;
  }

  /** {@inheritDoc AcquireHost.cancelInBackground} */
  cancelInBackground(ref: BackendLockRef, lifetime: number): void {
    void this.tasks.run(
      'clean-up of an abandoned acquisition',
      () => this.call('cancel', () => this.backend.cancel(ref)),
      monotonicNow() + lifetime,
    );
  }

  /** {@inheritDoc AcquireHost.track} */
  track<T>(promise: Promise<T>): Promise<T> {
    this.tasks.watch(promise);
    return promise;
  }

  /** Runs one backend call, turning anything that is not already a LockError into a LockBackendError. */
  call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    // Not an async function: this sits on every backend call, and a plain promise chain is
    // cheaper than an extra async frame.
    let promise: Promise<T>;
    try {
      promise = fn();
    } catch (err) {
      return Promise.reject(this.backendError(operation, err));
    }
    return promise.then(undefined, this.rethrowAs(operation));
  }

  /** Rejection handlers of {@link call}, one per operation name, made once. */
  private readonly rethrowers = new Map<string, (err: unknown) => never>();

  private rethrowAs(operation: string): (err: unknown) => never {
    let rethrow = this.rethrowers.get(operation);
    if (rethrow === undefined) {
      rethrow = (err: unknown): never => {
        throw this.backendError(operation, err);
      };
      // Bounded: operation names are the engine's own few, but a caller may pass a label of its own.
      if (this.rethrowers.size < 32) this.rethrowers.set(operation, rethrow);
    }
    return rethrow;
  }

  /** `err` as the LockBackendError an event reports. */
  private asBackendError(operation: string, err: Error): LockBackendError {
    const error = this.backendError(operation, err);
    return error instanceof LockBackendError
      ? error
      : new LockBackendError(this.backend.name, operation, errorMessage(err), {
          cause: err,
          endpoint: this.backend.endpoint,
        });
  }

  /** Every backend failure leaves the engine as a LockBackendError naming where it happened. */
  private backendError(operation: string, err: unknown): Error {
    const endpoint = this.backend.endpoint;
    if (err instanceof LockBackendError) {
      if (err.endpoint !== undefined || endpoint === undefined) return err;
      return new LockBackendError(err.backend, err.operation, err.detail, {
        cause: err.cause ?? err,
        endpoint,
      });
    }
    if (err instanceof LockError) return err;
    return new LockBackendError(this.backend.name, operation, errorMessage(err), {
      cause: err,
      endpoint,
    });
  }

  /**
   * One bounded round trip to the backend (its `ping`, else a read of one key), so that a wrong
   * or unreachable backend is found at startup rather than at the first lock.
   *
   * @throws LockBackendError naming the backend, where it connects and the cause
   */
  check(operation = 'answer a startup check'): Promise<void> {
    const backend = this.backend;
    return this.call(operation, () =>
      backend.ping
        ? backend.ping()
        : backend.inspect(`${this.defaults.keyPrefix}startup-check`).then(() => undefined),
    );
  }
}

/**
 * The engine's async context. It is a context, not a handle: it keeps nothing alive, which
 * `hasRef` says to tools that look for open handles (jest's --detectOpenHandles).
 */
class EngineScope extends AsyncResource {
  hasRef(): boolean {
    return false;
  }
}

/** A lock's fencing token, or undefined on a backend that issues none. */
function fencingTokenOf(lock: Lock): number | undefined {
  try {
    return lock.fencingToken;
  } catch {
    return undefined;
  }
}

/**
 * @throws TypeError when `holdAtLeast` cannot be honoured: longer than `maxHold`, or than a ttl
 *   that is not renewed
 */
function assertHoldAtLeast(
  holdAtLeast: number,
  maxHold: number | undefined,
  ttl: number,
  renew: boolean,
): void {
  if (maxHold !== undefined && holdAtLeast > maxHold) {
    throw new TypeError(`holdAtLeast (${holdAtLeast} ms) must be <= maxHold (${maxHold} ms)`);
  }
  // Without renewal the lock is ours until its validity deadline: the ttl less a safety margin.
  const valid = Math.floor(validityDeadline(0, ttl));
  if (!renew && holdAtLeast > valid) {
    throw new TypeError(
      `holdAtLeast (${holdAtLeast} ms) must be <= ${valid} ms (the ttl of ${ttl} ms less its safety margin) when renew is false: the lock would expire first`,
    );
  }
}
