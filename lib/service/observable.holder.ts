import { Observable } from 'rxjs';
import type { LockEngine } from '../engine/lock.engine';
import type { Lock } from '../engine/lock.interface';

/**
 * Holds `lock` for an Observable result until it completes, errors or is unsubscribed (what a
 * `@Locked` handler returning an Observable gets), then releases it. Meant for one subscription,
 * as Nest makes: with several, the first to end releases the lock.
 */
export function holdUntilComplete<V>(
  engine: LockEngine,
  source: Observable<V>,
  lock: Lock,
): Observable<V> {
  return new Observable<V>((subscriber) => {
    let settled = false;
    const settle = (error?: { error: unknown }): void => {
      if (settled) return;
      settled = true;
      if (error) {
        void engine.releaseQuietly(lock).then(() => subscriber.error(error.error));
      } else {
        engine.releaseAfterWork(lock).then(
          () => subscriber.complete(),
          (err: unknown) => subscriber.error(err),
        );
      }
    };
    const subscription = engine.context.run(lock, () =>
      source.subscribe({
        next: (value) => subscriber.next(value),
        error: (error: unknown) => settle({ error }),
        complete: () => settle(),
      }),
    );
    return () => {
      subscription.unsubscribe();
      if (!settled) {
        settled = true;
        void engine.releaseQuietly(lock);
      }
    };
  });
}
