/** What a call is about, as instrumentation sees it. */
export interface LockCallInfo {
  /** The bounded name: a `@Locked` key template or the caller's `name` option. */
  readonly name: string | undefined;
  /** The raw keys (without `keyPrefix`). */
  readonly keys: readonly string[];
  /** The backend's name. */
  readonly backend: string;
}

/**
 * Wraps the two phases of a locked call, so that a tracer can open a span around each and make
 * it the active context of the work. At most one is installed per `LockService`; none by default,
 * and then the engine calls the phases directly.
 */
export interface LockInstrumentation {
  /** Runs `acquire` (the wait for the lock) inside whatever context the instrumentation opens. */
  acquire<T>(info: LockCallInfo, acquire: () => Promise<T>): Promise<T>;
  /**
   * Runs `work` (the locked section of `withLock` or a `@Locked` method) inside whatever context
   * the instrumentation opens; `fencingToken` is the grant's, when the backend issues one.
   */
  work<T>(info: LockCallInfo, fencingToken: number | undefined, work: () => Promise<T>): Promise<T>;
}
