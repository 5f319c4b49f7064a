import { Inject, Optional, UseInterceptors } from '@nestjs/common';
import 'reflect-metadata';
import { defer, EMPTY, isObservable, mergeMap, Observable, of } from 'rxjs';
import { LockInterceptor } from '../interceptors/lock.interceptor';
import { LockError } from '../errors/lock.error';
import {
  assertKnownOptions,
  assertOptionalBoolean,
  MAX_NAME_LENGTH,
  toName,
  toTtl,
  toWait,
} from '../engine/lock-options.validator';
import { busyOverrides } from '../interceptors/busy.response';
import { LockService, RunLockedOptions } from '../service/lock.service';
import { compileKeyResolver, LockedKey } from './key-template.compiler';

/** Options of `@Locked`. Defaults come from the module options. */
export interface LockedOptions {
  /** Lock time-to-live in ms, renewed while the method runs. Default: module `ttl` (30000). */
  ttl?: number;
  /** How long to wait for a busy lock, in ms; 0 tries once. Default: module `wait` (10000). */
  wait?: number;
  /**
   * What a busy lock does: `'throw'` a `LockNotAcquiredError` (HTTP 409 on a controller), or
   * `'skip'` the call and resolve `undefined` (what a cron job on several instances wants).
   * Default `'throw'`.
   */
  onBusy?: 'throw' | 'skip';
  /** Extend the lock in the background while the method runs. Default true. */
  renew?: boolean;
  /**
   * The lock's name in events, metrics and spans. Default: the key template when `key` is a
   * string (`'order:<id>'`) or an array of them (joined with `,`), else `Class.method`.
   */
  name?: string;
  /**
   * Shortest time the lock is held, in ms, even when the method ends sooner (run-once cron: other
   * instances whose tick fires up to that much later skip it). Default 0.
   */
  holdAtLeast?: number;
  /**
   * Longest time the lock is held, in ms: then it is released and the method's
   * `LockService.current().signal` aborts with `LockLostError`. Default: no limit.
   */
  maxHold?: number;
  /**
   * On a controller, the `Retry-After` of the 409 a busy lock answers, in ms (sent as whole
   * seconds, rounded up): a hint, not the holder's remaining time. Default: module
   * `busyRetryAfter` (1000).
   */
  busyRetryAfter?: number;
  /** On a controller, the message of the 409 a busy lock answers. Default: module `busyMessage`. */
  busyMessage?: string;
}

/**
 * Accepts a method that returns a Promise or an Observable; for any other method it is a type
 * with a property whose name is the compile error's explanation.
 */
export type LockableMethod<T> = T extends (
  ...args: never[]
) => PromiseLike<unknown> | Observable<unknown>
  ? unknown
  : {
      /** Never present on a method: its name is the compile error's explanation. */
      readonly '@Locked applies only to methods that return a Promise or an Observable: make the method async': true;
    };

/** What `@Locked(...)` returns: a method decorator for async (or Observable) methods only. */
export type LockedDecorator = <T>(
  target: object,
  propertyKey: string | symbol,
  descriptor: TypedPropertyDescriptor<T> & LockableMethod<T>,
) => void;

/** Property through which Nest injects the LockService into a class with `@Locked` methods. */
const LOCK_SERVICE = Symbol('distributedLock.lockService');

type AnyMethod = (this: unknown, ...args: unknown[]) => unknown;

const LOCKED_OPTIONS = [
  'ttl',
  'wait',
  'onBusy',
  'renew',
  'name',
  'holdAtLeast',
  'maxHold',
  'busyRetryAfter',
  'busyMessage',
] as const;

/**
 * Runs the decorated method under a distributed lock: acquire before, renew during, release after.
 *
 * `key` is a template such as `'order:<orderId>'` (`<name>` is the parameter called `name`, `<0>`
 * the first parameter, `<order.id>` a property path), an array of templates (a multi-key lock,
 * taken all-or-none), or a function of the method's arguments. Placeholders read the method's
 * own arguments, so on a controller they see the values after pipes.
 *
 * Only methods that return a Promise or an Observable can be locked (a sync method is a compile
 * error), so the method's type already says what callers get. Route, cron and other metadata on
 * it survive, whichever order the decorators are written in. The current lock is available
 * inside as `LockService.current()`.
 *
 * Throws a `TypeError` when the class is defined if the key names no parameter or the target is
 * not a method; at call time, if an argument cannot form a key (undefined, null, an object without
 * the path, an empty string), before any backend call. A call on an instance that Nest did not
 * give a `LockService` (no `DistributedLockModule` in its application) rejects with a `LockError`
 * that names the class, the method and the module to import.
 */
export function Locked(key: LockedKey, options: LockedOptions = {}): LockedDecorator {
  assertKnownOptions(options, LOCKED_OPTIONS, '@Locked options');
  const { busyRetryAfter, busyMessage, ...lockOptions } = options;
  const runOptions: RunLockedOptions = { ...lockOptions };
  if (options.ttl !== undefined) runOptions.ttl = toTtl(options.ttl, '@Locked ttl');
  if (options.wait !== undefined) runOptions.wait = toWait(options.wait, '@Locked wait');
  if (options.name !== undefined) runOptions.name = toName(options.name, '@Locked name');
  if (options.maxHold !== undefined) runOptions.maxHold = toTtl(options.maxHold, '@Locked maxHold');
  if (options.holdAtLeast !== undefined) {
    runOptions.holdAtLeast = toWait(options.holdAtLeast, '@Locked holdAtLeast');
    if (runOptions.maxHold !== undefined && runOptions.holdAtLeast > runOptions.maxHold) {
      throw new TypeError(
        `@Locked holdAtLeast (${runOptions.holdAtLeast} ms) must be <= maxHold (${runOptions.maxHold} ms)`,
      );
    }
  }
  if (busyRetryAfter !== undefined || busyMessage !== undefined) {
    runOptions.busy = busyOverrides(busyRetryAfter, busyMessage, '@Locked');
  }

  if (options.onBusy !== undefined && options.onBusy !== 'throw' && options.onBusy !== 'skip') {
    throw new TypeError(`@Locked onBusy must be 'throw' or 'skip', got ${String(options.onBusy)}`);
  }
  assertOptionalBoolean(options.renew, '@Locked renew');

  return (target: object, propertyKey: string | symbol, descriptor: PropertyDescriptor): void => {
    const className = typeof target === 'function' ? target.name : target.constructor.name;
    const where = `@Locked on ${className}.${String(propertyKey)}`;
    const original: unknown = descriptor.value;
    if (typeof original !== 'function') {
      throw new TypeError(`${where}: only methods can be locked`);
    }
    if (typeof target === 'function') {
      throw new TypeError(`${where}: static methods cannot be locked (no injected LockService)`);
    }
    const method = original as AnyMethod;
    const resolveKeys = compileKeyResolver(key, method, where);
    // The key's template, never its values: a label whose cardinality stays bounded.
    const methodOptions: RunLockedOptions = {
      ...runOptions,
      name: runOptions.name ?? defaultLockName(key, className, propertyKey),
    };
    // Property injection: works for providers and controllers, and keeps each app's own service.
    // Optional, so that a module without DistributedLockModule (a unit test) still compiles and
    // the call says what to import, rather than Nest naming a hidden symbol.
    Inject(LockService)(target, LOCK_SERVICE);
    Optional()(target, LOCK_SERVICE);

    const run = function (this: Record<symbol, unknown>, ...args: unknown[]): Promise<unknown> {
      const service = this?.[LOCK_SERVICE];
      if (!(service instanceof LockService)) {
        return Promise.reject(
          new LockError(
            `${where}: no LockService was injected. Import DistributedLockModule.forRoot() in the ` +
              "application, or in a unit test DistributedLockTestingModule.forRoot() from 'nestjs-distributed-lock/testing' " +
              '(Test.createTestingModule({ imports: [DistributedLockTestingModule.forRoot()], ... })); ' +
              'with isGlobal: false, import it in the module of this class too. The class must be a ' +
              'provider or controller that Nest creates',
          ),
        );
      }
      let keys;
      try {
        keys = resolveKeys(args);
      } catch (err) {
        return Promise.reject(err);
      }
      return service.runLocked(keys, methodOptions, () => method.apply(this, args));
    };
    // A method declared to return an Observable keeps returning one (cold: the lock is taken on
    // subscription, held until it ends); Nest emits the declared type as design:returntype.
    const declared: unknown = Reflect.getMetadata('design:returntype', target, propertyKey);
    // The work of an Observable outlives the call: no span can be the context it runs in.
    if (declared === Observable) methodOptions.traceHold = false;
    const wrapped =
      declared === Observable
        ? function (this: Record<symbol, unknown>, ...args: unknown[]): Observable<unknown> {
            return defer(() => run.apply(this, args)).pipe(
              mergeMap((result) =>
                isObservable(result) ? result : result === undefined ? EMPTY : of(result),
              ),
            );
          }
        : run;
    Object.defineProperty(wrapped, 'name', { value: method.name, configurable: true });
    for (const metadataKey of Reflect.getMetadataKeys(method)) {
      Reflect.defineMetadata(metadataKey, Reflect.getMetadata(metadataKey, method), wrapped);
    }
    descriptor.value = wrapped;
    UseInterceptors(LockInterceptor)(target, propertyKey, descriptor);
  };
}

/** The name a `@Locked` method's lock has in events, metrics and spans unless given one. */
function defaultLockName(key: LockedKey, className: string, propertyKey: string | symbol): string {
  const template = typeof key === 'string' ? key : Array.isArray(key) ? key.join(',') : undefined;
  const name = template ?? `${className}.${String(propertyKey)}`;
  return name.length <= MAX_NAME_LENGTH ? name : name.slice(0, MAX_NAME_LENGTH);
}
