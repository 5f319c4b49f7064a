import { LockError } from './lock.error';

/**
 * Ownership of a lock was lost while it was held: it expired, was taken by another owner, or its
 * validity ran out because renewals could not reach the backend.
 */
export class LockLostError extends LockError {
  /**
   * @param key the first (canonical) user-facing key of the lost lock
   * @param reason why ownership was lost
   */
  constructor(
    readonly key: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`Lock "${key}" was lost: ${reason}`, options);
  }
}
