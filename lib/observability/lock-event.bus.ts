import { errorMessage } from '../errors/error.message';
import { LOCK_EVENT_TYPES } from './lock.events';
import type { LockEventListener, LockEventMap, LockEventType } from './lock.events';

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/** A listener that threw is reported at most this often, in ms, with the count of the others. */
const REPORT_EVERY = 10_000;

/**
 * Dispatches lock events to their listeners, synchronously and in subscription order. A listener
 * that throws is logged (rate-limited), never propagated: observing a lock must not break it.
 * `active` is false while nobody listens, and the engine then builds no event at all.
 */
export class LockEventBus {
  private readonly listeners = new Map<LockEventType, LockEventListener<LockEventType>[]>();
  /** Whether any listener of any type is subscribed. */
  active = false;
  private failures = 0;
  private reportedAt = -Infinity;

  constructor(private readonly logger: { error(message: string): void }) {}

  /**
   * Subscribes `listener` to events of `type`; returns the unsubscribe function.
   *
   * @throws TypeError for an unknown type or a listener that is not a function
   */
  on<E extends LockEventType>(type: E, listener: LockEventListener<E>): () => void {
    if (!LOCK_EVENT_TYPES.includes(type)) {
      throw new TypeError(
        `unknown lock event type ${String(type)}; expected one of ${LOCK_EVENT_TYPES.join(', ')}`,
      );
    }
    if (typeof listener !== 'function')
      throw new TypeError('a lock event listener must be a function');
    const list = this.listeners.get(type) ?? [];
    // A copy: a listener that unsubscribes during a dispatch must not shift the loop under it.
    this.listeners.set(type, [...list, listener as LockEventListener<LockEventType>]);
    this.active = true;
    let subscribed = true;
    return () => {
      if (!subscribed) return;
      subscribed = false;
      const current = this.listeners.get(type) ?? [];
      const at = current.indexOf(listener as LockEventListener<LockEventType>);
      if (at >= 0) {
        const next = [...current.slice(0, at), ...current.slice(at + 1)];
        if (next.length > 0) this.listeners.set(type, next);
        else this.listeners.delete(type);
      }
      this.active = this.listeners.size > 0;
    };
  }

  /** Whether anyone listens to `type`. */
  has(type: LockEventType): boolean {
    return this.listeners.has(type);
  }

  /** Calls every listener of `type` with `event`; never throws. */
  emit<E extends LockEventType>(type: E, event: LockEventMap[E]): void {
    const list = this.listeners.get(type);
    if (!list) return;
    for (const listener of list) {
      try {
        const result: unknown = listener(event);
        // An async listener's rejection must not become an unhandled rejection either.
        if (isThenable(result))
          result.then(undefined, (err: unknown) => this.reportFailure(type, err));
      } catch (err) {
        this.reportFailure(type, err);
      }
    }
  }

  private reportFailure(type: LockEventType, err: unknown): void {
    try {
      this.logFailure(type, err);
    } catch {
      // Even a thrown value that cannot be printed must not reach the lock path.
    }
  }

  private logFailure(type: LockEventType, err: unknown): void {
    this.failures++;
    const now = performance.now();
    if (now - this.reportedAt < REPORT_EVERY) return;
    const others = this.failures - 1;
    this.failures = 0;
    this.reportedAt = now;
    this.logger.error(
      `a lock event listener ("${type}") threw, ignored: ${errorMessage(err)}` +
        (others > 0 ? ` (${others} more listener errors since the last report)` : ''),
    );
  }
}
