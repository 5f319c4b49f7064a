/**
 * Injection token of the module options as `forRoot` / `forRootAsync` give them. Internal: the
 * module does not export its provider, so only the runtime factory injects it.
 */
export const DISTRIBUTED_LOCK_OPTIONS = Symbol('DISTRIBUTED_LOCK_OPTIONS');

/** Injection token of the resolved backend and defaults the module runs with. */
export const DISTRIBUTED_LOCK_RUNTIME = Symbol('DISTRIBUTED_LOCK_RUNTIME');

/** Default key prefix, so lock keys never collide with application data keys. */
export const DEFAULT_KEY_PREFIX = 'lock:';
/** Default lock time-to-live in ms. */
export const DEFAULT_TTL = 30_000;
/** Default time a caller waits for a busy lock, in ms. */
export const DEFAULT_WAIT = 10_000;
/** Default shutdown grace in ms: how long locked work may finish once shutdown starts. */
export const DEFAULT_SHUTDOWN_GRACE = 10_000;
/** Default `Retry-After` of a busy 409, in ms. */
export const DEFAULT_BUSY_RETRY_AFTER = 1_000;
/** Default message of a busy 409: generic, so no lock key reaches the client. */
export const DEFAULT_BUSY_MESSAGE = 'The resource is busy; try again later.';
