import { Inject, UseInterceptors } from '@nestjs/common';
import 'reflect-metadata';
import { LockInterceptor } from '../interceptors/lock.interceptor';
import { LockError } from '../errors/lock.error';
import {
  assertKnownOptions,
  assertOptionalBoolean,
  toTtl,
  toWait,
} from '../engine/lock-options.validator';
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
}

/** Property through which Nest injects the LockService into a class with `@Locked` methods. */
const LOCK_SERVICE = Symbol('distributedLock.lockService');

type AnyMethod = (this: unknown, ...args: unknown[]) => unknown;

const LOCKED_OPTIONS = ['ttl', 'wait', 'onBusy', 'renew'] as const;

/**
 * Runs the decorated method under a distributed lock: acquire before, renew during, release after.
 *
 * `key` is a template such as `'order:<orderId>'` (`<name>` is the parameter called `name`, `<0>`
 * the first parameter, `<order.id>` a property path), an array of templates (a multi-key lock,
 * taken all-or-none), or a function of the method's arguments. Placeholders read the method's
 * own arguments, so on a controller they see the values after pipes.
 *
 * The method becomes async. Route, cron and other metadata on it survive, whichever order the
 * decorators are written in. The current lock is available inside as `LockService.current()`.
 *
 * Throws a `TypeError` when the class is defined if the key names no parameter or the target is
 * not a method; at call time, if an argument cannot form a key (undefined, null, an object without
 * the path, an empty string), before any backend call.
 */
export function Locked(key: LockedKey, options: LockedOptions = {}): MethodDecorator {
  assertKnownOptions(options, LOCKED_OPTIONS, '@Locked options');
  const runOptions: RunLockedOptions = { ...options };
  if (options.ttl !== undefined) runOptions.ttl = toTtl(options.ttl, '@Locked ttl');
  if (options.wait !== undefined) runOptions.wait = toWait(options.wait, '@Locked wait');
  if (options.onBusy !== undefined && options.onBusy !== 'throw' && options.onBusy !== 'skip') {
    throw new TypeError(`@Locked onBusy must be 'throw' or 'skip', got ${String(options.onBusy)}`);
  }
  assertOptionalBoolean(options.renew, '@Locked renew');

  return (target: object, propertyKey: string | symbol, descriptor: PropertyDescriptor) => {
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
    // Property injection: works for providers and controllers, and keeps each app's own service.
    Inject(LockService)(target, LOCK_SERVICE);

    const wrapped = function (this: Record<symbol, unknown>, ...args: unknown[]): Promise<unknown> {
      const service = this?.[LOCK_SERVICE];
      if (!(service instanceof LockService)) {
        return Promise.reject(
          new LockError(
            `${where}: no LockService was injected; the class must be a Nest provider or controller ` +
              'of an application that imports DistributedLockModule',
          ),
        );
      }
      let keys;
      try {
        keys = resolveKeys(args);
      } catch (err) {
        return Promise.reject(err);
      }
      return service.runLocked(keys, runOptions, () => method.apply(this, args));
    };
    Object.defineProperty(wrapped, 'name', { value: method.name, configurable: true });
    for (const metadataKey of Reflect.getMetadataKeys(method)) {
      Reflect.defineMetadata(metadataKey, Reflect.getMetadata(metadataKey, method), wrapped);
    }
    descriptor.value = wrapped;
    UseInterceptors(LockInterceptor)(target, propertyKey, descriptor);
    return descriptor;
  };
}
