import { LockError } from './lock.error';

/** The lock was busy for the whole wait (or `wait` was 0 and it was busy once). */
export class LockNotAcquiredError extends LockError {
  /**
   * @param key the first (canonical) user-facing key that could not be taken
   * @param keys every user-facing key of the request
   * @param waited how long the caller waited, in ms
   * @param retryAfter a hint, in ms, of when the lock may be free again
   */
  constructor(
    readonly key: string,
    readonly keys: readonly string[],
    readonly waited: number,
    readonly retryAfter?: number,
  ) {
    super(
      `Lock "${keys.join('", "')}" not acquired within ${waited} ms: it is held by another owner`,
    );
  }
}
