import { LockError } from './lock.error';

/**
 * The backend failed or could not be reached in time. Never used for "busy": a busy lock is a
 * {@link nestjs-distributed-lock!LockNotAcquiredError}. The message names the backend, where it
 * connects (when known) and the underlying cause, which is also kept as `cause`.
 */
export class LockBackendError extends LockError {
  /** What went wrong, as reported by the backend or its client (the message's last part). */
  readonly detail: string;
  /** Where the backend connects (`127.0.0.1:6379`, an etcd host list), when known. */
  readonly endpoint: string | undefined;

  /**
   * @param backend name of the backend (`memory`, `redis`, `etcd`, ...)
   * @param operation what was attempted (`acquire`, `extend`, `release`, ...)
   * @param detail what went wrong, such as `connect ECONNREFUSED 127.0.0.1:6379`
   */
  constructor(
    readonly backend: string,
    readonly operation: string,
    detail: string,
    options?: { cause?: unknown; endpoint?: string },
  ) {
    const at = options?.endpoint ? ` at ${options.endpoint}` : '';
    super(`${backend} backend${at} failed to ${operation}: ${detail}`, options);
    this.detail = detail;
    this.endpoint = options?.endpoint;
  }
}
