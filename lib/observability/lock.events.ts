import type { LockBackendError } from '../errors/lock-backend.error';
import type { LockLostError } from '../errors/lock-lost.error';
import type { LockNotAcquiredError } from '../errors/lock-not-acquired.error';

/** What every lock event carries. */
export interface LockEventBase {
  /**
   * A bounded name for the lock: the key template of a `@Locked` method (`'order:<id>'`), or the
   * `name` option given to `LockService` calls; `undefined` when neither was given. Metrics and
   * spans label with this, never with the raw keys.
   */
  readonly name: string | undefined;
  /** The raw keys of the call (without the module's `keyPrefix`). Unbounded: do not label with them. */
  readonly keys: readonly string[];
  /** The backend's name: `'memory'`, `'redis'`, `'etcd'` or `'redlock'` (or a custom backend's). */
  readonly backend: string;
}

/** What the events of one grant carry, from `acquired` to its end. */
export interface LockGrantEventBase extends LockEventBase {
  /**
   * The grant's number, unique within the `LockService`: the same in its `acquired`, `extended`,
   * `released` or `lost` events, so a listener can tell the end of a grant it saw start from one
   * that started before it subscribed.
   */
  readonly grant: number;
}

/** A lock was granted to this instance (reentrant re-entries excluded). */
export interface LockAcquiredEvent extends LockGrantEventBase {
  /** Time from the call to the grant, in ms. */
  readonly waited: number;
}

/** A lock was not granted within its wait (`LockNotAcquiredError`, or `null` from `tryAcquire`). */
export interface LockBusyEvent extends LockEventBase {
  /** Time from the call to the refusal, in ms. */
  readonly waited: number;
  /** The refusal. */
  readonly error: LockNotAcquiredError;
}

/** A `@Locked({ onBusy: 'skip' })` call did not run because the lock was busy or the app was shutting down. */
export interface LockSkippedEvent extends LockEventBase {
  /** Time from the call to the refusal, in ms. */
  readonly waited: number;
}

/**
 * A held lock was released by its owner. When the release could not reach the backend (an
 * `error` event came first), the lock was given up all the same: it then ends with its ttl.
 */
export interface LockReleasedEvent extends LockGrantEventBase {
  /** Time from the grant to the release, in ms. */
  readonly held: number;
}

/** A held lock was extended (a background renewal or `lock.extend()`). */
export interface LockExtendedEvent extends LockGrantEventBase {
  /** Time since the grant, in ms. */
  readonly held: number;
  /** The ttl it was extended to, in ms. */
  readonly ttl: number;
}

/** A held lock was lost: it expired, was taken over, or the app shut down with it still held. */
export interface LockLostEvent extends LockGrantEventBase {
  /** Time from the grant to the loss, in ms. */
  readonly held: number;
  /** The error the lock's signal aborted with. */
  readonly error: LockLostError;
}

/** A backend call failed (acquire, release or extend); a failed extend is retried while the lock is valid. */
export interface LockBackendErrorEvent extends LockEventBase {
  /** The grant a release or extend was for; undefined for an acquisition. */
  readonly grant?: number;
  /** What was attempted: `'acquire'`, `'release'` or `'extend'`. */
  readonly operation: 'acquire' | 'release' | 'extend';
  /** The failure. */
  readonly error: LockBackendError;
}

/** Every lock event, by type, for {@link LockService.on}. */
export interface LockEventMap {
  /** A lock was granted: {@link LockAcquiredEvent}. */
  acquired: LockAcquiredEvent;
  /** A lock was not granted within its wait: {@link LockBusyEvent}. */
  busy: LockBusyEvent;
  /** An `onBusy: 'skip'` call did not run: {@link LockSkippedEvent}. */
  skipped: LockSkippedEvent;
  /** A held lock was released: {@link LockReleasedEvent}. */
  released: LockReleasedEvent;
  /** A held lock was extended: {@link LockExtendedEvent}. */
  extended: LockExtendedEvent;
  /** A held lock was lost: {@link LockLostEvent}. */
  lost: LockLostEvent;
  /** A backend call failed: {@link LockBackendErrorEvent}. */
  error: LockBackendErrorEvent;
}

/** The type of a lock event: a key of {@link LockEventMap}. */
export type LockEventType = keyof LockEventMap;

/** Every lock event type, in the order of {@link LockEventMap}. */
export const LOCK_EVENT_TYPES: readonly LockEventType[] = Object.freeze([
  'acquired',
  'busy',
  'skipped',
  'released',
  'extended',
  'lost',
  'error',
]);

/**
 * A function called, synchronously, with each event of one type. It may be async: nothing waits
 * for it, and a rejection is logged like a throw.
 */
export type LockEventListener<E extends LockEventType> = (event: LockEventMap[E]) => void;
