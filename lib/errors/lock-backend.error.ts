import { LockError } from './lock.error';

/**
 * The backend failed or could not be reached in time. Never used for "busy": a busy lock is a
 * {@link LockNotAcquiredError}. The original error is kept as `cause`.
 */
export class LockBackendError extends LockError {
  /**
   * @param backend name of the backend (`memory`, `redis`, `etcd`, ...)
   * @param operation what was attempted (`acquire`, `extend`, `release`, ...)
   */
  constructor(
    readonly backend: string,
    readonly operation: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${backend} backend failed to ${operation}: ${message}`, options);
  }
}
