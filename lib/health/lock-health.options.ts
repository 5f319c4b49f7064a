import { assertKnownOptions, MAX_DURATION, toTtl } from '../engine/lock-options.validator';

/** Default of {@link LockHealthCheckOptions.timeout}, in ms. */
export const DEFAULT_LOCK_HEALTH_TIMEOUT = 1000;

/**
 * Shortest ttl of the lock a health check takes, in ms. A check that timed out may still be
 * granted its lock afterwards, by a backend that was frozen rather than down; it is released
 * then, and if even that release is lost, the lock ends on its own after this long.
 */
const MIN_HEALTH_LOCK_TTL = 10_000;

/** Options of `LockHealthIndicator.isHealthy`. */
export interface LockHealthCheckOptions {
  /**
   * How long the whole check (ping, acquire and release) may take, in ms, before it reports
   * `down`. Default 1000 (Kubernetes' default probe timeout is 1 s). A number of ms in
   * (0, 2147483647]; a fraction is rounded up.
   */
  timeout?: number;
}

/**
 * {@link LockHealthCheckOptions} once checked: times in whole ms.
 * @internal
 */
export interface ResolvedLockHealthCheckOptions {
  /** See {@link LockHealthCheckOptions.timeout}. */
  readonly timeout: number;
  /**
   * ttl of the check's lock: at least twice the timeout, so that an answer within the timeout is
   * also within the engine's limit for handing a grant out (half the ttl).
   */
  readonly ttl: number;
}

/**
 * Checks the options of one health check.
 *
 * @throws TypeError for an unknown option name, or a timeout that is not a number of ms in
 *   (0, 2147483647]
 * @internal
 */
export function resolveLockHealthOptions(
  options: LockHealthCheckOptions | undefined,
): ResolvedLockHealthCheckOptions {
  const where = 'LockHealthIndicator.isHealthy options';
  assertKnownOptions(options, ['timeout'], where);
  const timeout = toTtl(options?.timeout ?? DEFAULT_LOCK_HEALTH_TIMEOUT, `${where}: timeout`);
  return { timeout, ttl: Math.min(MAX_DURATION, Math.max(MIN_HEALTH_LOCK_TTL, 2 * timeout)) };
}
