import type { LockNotAcquiredError } from '../errors/lock-not-acquired.error';
import { toTtl } from '../engine/lock-options.validator';
import { describeValue } from '../engine/lock-key.validator';

/** What a busy lock answers over HTTP: 409 with this message and `Retry-After`. */
export interface BusyResponse {
  /** ms; sent as whole seconds, rounded up. */
  readonly retryAfter: number;
  readonly message: string;
}

/**
 * The given parts of a busy response, checked; absent ones stay absent.
 *
 * @throws TypeError when `retryAfter` is not a duration in ms or `message` not a non-empty string
 */
export function busyOverrides(
  retryAfter: unknown,
  message: unknown,
  where: string,
): Partial<BusyResponse> {
  if (message !== undefined && (typeof message !== 'string' || message.trim() === '')) {
    throw new TypeError(
      `${where} busyMessage must be a non-empty string, got ${describeValue(message)}`,
    );
  }
  return {
    ...(retryAfter !== undefined && { retryAfter: toTtl(retryAfter, `${where} busyRetryAfter`) }),
    ...(message !== undefined && { message: message as string }),
  };
}

// What the `@Locked` method that gave up on a lock says its 409 should be; the interceptor,
// which may sit on an outer controller, reads it from the error.
const overrides = new WeakMap<LockNotAcquiredError, Partial<BusyResponse>>();

/** Records a `@Locked` method's own busy response on the error it throws; the innermost wins. */
export function attachBusyResponse(
  error: LockNotAcquiredError,
  response: Partial<BusyResponse>,
): void {
  if (!overrides.has(error)) overrides.set(error, response);
}

/** The busy response for `error`: the `@Locked` method's own, else `fallback`. */
export function busyResponseOf(error: LockNotAcquiredError, fallback: BusyResponse): BusyResponse {
  const own = overrides.get(error);
  return own ? { ...fallback, ...own } : fallback;
}
