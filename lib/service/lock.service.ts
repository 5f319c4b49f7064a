import { holdUntilComplete } from './observable.holder';
import {
  BeforeApplicationShutdown,
  Inject,
  Injectable,
  Logger,
  OnApplicationShutdown,
  OnModuleInit,
} from '@nestjs/common';
import { isObservable } from 'rxjs';
import { LockBackendError } from '../errors/lock-backend.error';
import { LockNotAcquiredError } from '../errors/lock-not-acquired.error';
import { LockShutdownError } from '../errors/lock-shutdown.error';
import { attachBusyResponse, BusyResponse } from '../interceptors/busy.response';
import type { AcquireOptions, WithLockOptions } from '../engine/acquire-options.interface';
import { monotonicNow } from '../engine/clock';
import type { LockEventListener, LockEventType } from '../observability/lock.events';
import type { LockInstrumentation } from '../observability/lock.instrumentation';
import { LockEngine } from '../engine/lock.engine';
import type { Lock } from '../engine/lock.interface';
import { normalizeKeys, type LockKeys } from '../engine/lock-key.validator';
import { DISTRIBUTED_LOCK_RUNTIME } from '../module/distributed-lock.constants';
import type { LockRuntime } from '../module/lock-runtime.factory';

/** @internal What `@Locked` passes to {@link LockService.runLocked}. */
export interface RunLockedOptions extends WithLockOptions {
  /**
   * `'skip'`: a busy lock, or one refused because the app is shutting down, resolves `undefined`
   * without running the method. Default `'throw'`.
   */
  onBusy?: 'throw' | 'skip';
  /** The method's own 409 answer, over the module's. */
  busy?: Partial<BusyResponse>;
  /** false: no span around the locked section (a method that returns an Observable). */
  traceHold?: boolean;
}

/**
 * The lock API: inject it anywhere once `DistributedLockModule` is imported.
 *
 * Times are milliseconds. Bad input throws a `TypeError` before any backend call; a busy lock
 * throws `LockNotAcquiredError`; a backend failure throws `LockBackendError`; a lock lost while
 * held surfaces as `LockLostError`.
 */
@Injectable()
export class LockService implements OnModuleInit, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger('DistributedLock');
  private readonly engine: LockEngine;

  constructor(@Inject(DISTRIBUTED_LOCK_RUNTIME) private readonly runtime: LockRuntime) {
    this.engine = new LockEngine(runtime.backend, runtime.defaults, this.logger);
  }

  /**
   * Acquires `keys` (one key, or several taken all-or-none), waiting up to `options.wait` ms.
   * Release it with `lock.release()` or `await using`. Throws `LockNotAcquiredError` if it stays
   * busy, the signal's reason if `options.signal` aborts the wait.
   */
  acquire(keys: LockKeys, options: AcquireOptions = {}): Promise<Lock> {
    return this.engine.acquire(keys, options, 'wait');
  }

  /** Like {@link acquire}, but resolves `null` when the lock is busy. Default `wait` is 0 (one try). */
  tryAcquire(keys: LockKeys, options: AcquireOptions = {}): Promise<Lock | null> {
    return this.engine.acquire(keys, options, 'try');
  }

  /**
   * Acquires `keys`, runs `fn(lock)`, and releases. If the lock is lost while `fn` runs,
   * `lock.signal` aborts at once, and `LockLostError` is thrown after `fn` ends, unless `fn`
   * threw first (its error wins).
   */
  async withLock<T>(
    keys: LockKeys,
    fn: (lock: Lock) => T | Promise<T>,
    options: WithLockOptions = {},
  ): Promise<T> {
    const lock = await this.engine.acquire(keys, options, 'work');
    return this.engine.runHolding(lock, () => fn(lock), undefined, options.name);
  }

  /**
   * Calls `listener` synchronously with every lock event of `type` from now on: `acquired`,
   * `busy`, `skipped`, `released`, `extended`, `lost`, `error` (see {@link LockEventMap}). A
   * listener that throws is logged, never propagated into the lock. While nobody listens, the
   * engine builds no event. Returns the function that unsubscribes.
   *
   * @throws TypeError for an unknown event type or a listener that is not a function
   */
  on<E extends LockEventType>(type: E, listener: LockEventListener<E>): () => void {
    return this.engine.events.on(type, listener);
  }

  /**
   * Installs `instrumentation` around every acquisition and locked section (what
   * `nestjs-distributed-lock/opentelemetry` does), replacing the previous one. Returns the
   * function that removes it.
   */
  instrument(instrumentation: LockInstrumentation): () => void {
    return this.engine.instrument(instrumentation);
  }

  /**
   * One bounded round trip to the backend (its ping, else a read of one key), as the startup check
   * makes; what the health indicator of `nestjs-distributed-lock/terminus` calls.
   *
   * @throws LockBackendError naming the backend, where it connects and the cause
   */
  checkBackend(): Promise<void> {
    return this.engine.check('answer a backend check');
  }

  /** Whether `key` is currently held by anyone. */
  isLocked(key: string): Promise<boolean> {
    return this.engine.isLocked(key);
  }

  /** The innermost lock held by the current async call chain (inside `withLock` or a `@Locked` method). */
  current(): Lock | undefined {
    return this.engine.current();
  }

  /**
   * Runs `invoke` under a lock on `keys`: what `@Locked` methods do. An Observable result keeps
   * the lock until it completes, errors or is unsubscribed.
   * @internal
   */
  async runLocked<T>(
    keys: LockKeys,
    options: RunLockedOptions,
    invoke: () => T,
  ): Promise<T | undefined> {
    const { onBusy, busy, traceHold, ...acquireOptions } = options;
    const skip = onBusy === 'skip';
    // The skipped event's wait, read only when someone listens.
    const startedAt = skip && this.engine.events.active ? monotonicNow() : 0;
    let lock: Lock;
    try {
      lock = await this.engine.acquire(keys, acquireOptions, skip ? 'skip' : 'work');
    } catch (err) {
      const refused = err instanceof LockNotAcquiredError || err instanceof LockShutdownError;
      if (skip && refused) {
        this.logger.debug?.(`skipped: ${(err as Error).message}`);
        if (startedAt > 0) this.reportSkip(keys, acquireOptions.name, startedAt);
        return undefined;
      }
      if (busy && err instanceof LockNotAcquiredError) attachBusyResponse(err, busy);
      throw err;
    }
    return this.engine.runHolding(
      lock,
      invoke,
      (result) =>
        isObservable(result) ? (holdUntilComplete(this.engine, result, lock) as T) : undefined,
      acquireOptions.name,
      traceHold,
    );
  }

  private reportSkip(keys: LockKeys, name: string | undefined, startedAt: number): void {
    this.engine.events.emit('skipped', {
      name,
      keys: normalizeKeys(keys),
      backend: this.runtime.backend.name,
      waited: monotonicNow() - startedAt,
    });
  }

  /**
   * Calls `listener` with every lock this service grants from now on (the testing kit).
   * @internal
   */
  onGrant(listener: (lock: Lock, ttl: number) => void): () => void {
    return this.engine.onGrant(listener);
  }

  /**
   * What the module runs with: the testing kit takes a second "instance" on the same backend.
   * @internal
   */
  get lockRuntime(): LockRuntime {
    return this.runtime;
  }

  /**
   * The module's busy 409 answer, for the interceptor.
   * @internal
   */
  get busyResponse(): BusyResponse {
    return this.runtime.busy;
  }

  // The lifecycle hooks stay in the published types, unlike runLocked: the class declares that
  // it implements Nest's lifecycle interfaces, and a declaration without them would not compile.

  /**
   * Called by Nest at startup: unless `checkBackend: false`, checks that the backend answers.
   * @throws LockBackendError naming the backend, its host and the cause, which fails the start
   */
  async onModuleInit(): Promise<void> {
    if (!this.runtime.checkBackend) return;
    try {
      await this.engine.check();
    } catch (err) {
      // Nest runs no shutdown hook after a failed start: close what the module opened, or its
      // reconnecting client would keep the process alive.
      await this.engine.shutdown(0);
      if (this.runtime.ownsBackend) await this.runtime.backend.close?.();
      if (!(err instanceof LockBackendError)) throw err;
      const hint = ' (DistributedLockModule option checkBackend: false starts the app without it)';
      throw new LockBackendError(err.backend, err.operation, err.detail + hint, {
        cause: err.cause ?? err,
        endpoint: err.endpoint,
      });
    }
  }

  /**
   * Called by Nest: refuses new locks, lets held ones run (renewed) for up to `shutdownGrace` ms
   * until released, then releases what is left, before the app's connections close.
   */
  async beforeApplicationShutdown(): Promise<void> {
    await this.engine.shutdown(this.runtime.shutdownGrace);
  }

  /** Called by Nest: closes the backend if the module created it; one you passed in stays open. */
  async onApplicationShutdown(): Promise<void> {
    if (this.runtime.ownsBackend) await this.runtime.backend.close?.();
  }
}
