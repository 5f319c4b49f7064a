import { LockError } from './lock.error';

/**
 * The application is shutting down: no new lock is granted, and a caller still waiting for one
 * gives up. Locks already held keep running until released or until the shutdown grace ends.
 * On a controller it answers HTTP 503 Service Unavailable.
 */
export class LockShutdownError extends LockError {
  constructor() {
    super('the lock module is shutting down: no new locks are granted');
  }
}
