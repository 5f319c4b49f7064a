/**
 * Timers shared by the backends, for operations someone awaits. Both keep the process alive while
 * they run, like the I/O they bound: a script awaiting an acquire on an unreachable server must
 * get its rejection, not exit silently because nothing else was ref'd (grpc-js unrefs its own
 * reconnect timers). Background timers (keep-alives, renewals, retries nobody awaits) are
 * unref'd where they are created.
 */

/**
 * Settles like `promise`, or rejects with `onTimeout()` after `ms` (at least 1), whichever comes
 * first. The timer is cleared when `promise` settles, so it never outlives the operation.
 */
export function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  onTimeout: () => Error,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), Math.max(1, ms));
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** Resolves after `ms` (at least 0): a pause inside an awaited operation. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}
