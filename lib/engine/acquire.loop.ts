import type {
  BackendHandoff,
  BackendLockRef,
  LockBackend,
} from '../backends/lock-backend.interface';
import { LockNotAcquiredError } from '../errors/lock-not-acquired.error';
import { monotonicNow } from './clock';
import { newOwnerToken } from './owner.token';
import { GrantedLock, validityDeadline } from './granted.lock';
import { WakeWaiter } from './wake.waiter';

/** What the acquire loop needs from the engine it runs for. */
export interface AcquireHost {
  readonly backend: LockBackend;
  readonly defaults: { readonly keyPrefix: string };
  /** Aborted when the engine shuts down: waiting stops. */
  readonly stopping: AbortSignal;
  /** Runs one backend call; a failure becomes a `LockBackendError`. */
  call<T>(operation: string, fn: () => Promise<T>): Promise<T>;
  /** Keeps a caller-awaited backend call in view of shutdown, which settles it before closing. */
  track<T>(promise: Promise<T>): Promise<T>;
  /** Registers a new grant (renewal, validity, loss reports) and returns its handle. */
  hold(
    keys: readonly string[],
    ref: BackendLockRef,
    fencingTokens: readonly number[],
    ttl: number,
    renew: boolean,
    sentAt: number,
    validFor: number,
  ): GrantedLock;
  /**
   * Removes what an acquisition that returned no lock may have left (a queue entry, a grant whose
   * answer was lost), retried behind the caller's answer until it would have expired by itself,
   * `lifetime` ms from now.
   */
  cancelInBackground(ref: BackendLockRef, lifetime: number): void;
}

/** One acquisition, validated: user keys (canonical order), times in ms. */
export interface GrantRequest {
  readonly keys: readonly string[];
  readonly ttl: number;
  readonly wait: number;
  readonly renew: boolean;
  readonly signal: AbortSignal | undefined;
}

/**
 * The acquire loop, the same for every backend: one attempt, then (while the wait lasts) park
 * until a wake-up, a re-check hint, the backend's `retryAfter` or the deadline, and try again; a
 * wake-up that carries the handed-over lock is taken without another round trip.
 *
 * @throws LockNotAcquiredError when the wait ends without a grant; LockBackendError when the
 *   backend failed; the abort reason when `signal` (or shutdown) aborts the wait
 */
export async function acquireGrant(host: AcquireHost, request: GrantRequest): Promise<GrantedLock> {
  const { keys, ttl, wait, renew, signal } = request;
  const { backend, stopping } = host;
  const prefix = host.defaults.keyPrefix;
  const ref: BackendLockRef = {
    // Without a prefix the user keys are the backend keys (both arrays are never mutated).
    keys:
      prefix === ''
        ? keys
        : keys.length === 1
          ? [prefix + keys[0]]
          : keys.map((key) => prefix + key),
    token: newOwnerToken(),
  };
  const started = monotonicNow();
  const deadline = started + wait;
  // Created on the first busy answer: most acquisitions never wait.
  let waiter: WakeWaiter | undefined;
  let wokenEarly = false;
  let attempt = 0;
  let sentAt = 0;
  let handoff: BackendHandoff | undefined;
  // A hint to re-check by this monotonic time (see WakeListener's `recheckAfter`).
  let recheckAt = Infinity;
  // Subscribe before the first attempt: a release that hands us the lock must find us listening.
  const unsubscribe =
    wait > 0
      ? backend.onWake(ref.token, (offer, recheckAfter) => {
          if (!offer && recheckAfter !== undefined && recheckAfter >= 0) {
            recheckAt = Math.min(recheckAt, monotonicNow() + recheckAfter);
            waiter?.recheckBy(recheckAt);
            return;
          }
          // Only an offer for our latest attempt is known to postdate that attempt's send time.
          if (offer && offer.attempt === attempt && offer.fencingTokens.length === keys.length) {
            handoff = offer;
          }
          if (waiter) waiter.wake();
          else wokenEarly = true;
        })
      : undefined;
  // Whether the backend may hold state for this token (a queue entry, or a grant whose answer
  // was lost): if so, and no lock is returned, `cancel` must clean it up.
  let leftState = false;
  let retryAfter: number | undefined;
  // A late grant was declined once already (see below).
  let declined = false;
  try {
    // Bounded by the deadline; every round parks at least 1 ms or awaits a backend round trip.
    for (;;) {
      waiter?.reset();
      wokenEarly = false;
      handoff = undefined;
      // A hint is about the state before this attempt; its answer supersedes it.
      recheckAt = Infinity;
      attempt++;
      sentAt = monotonicNow();
      const queueFor = wait > 0 ? Math.max(1, Math.ceil(deadline - sentAt)) : 0;
      leftState = true;
      const request = { keys: ref.keys, token: ref.token, ttl, queueFor, attempt };
      // Tracked: shutdown waits for it, so a grant it brings is cleaned up before the close.
      const result = await host.track(host.call('acquire', () => backend.acquire(request)));
      let lock: GrantedLock | undefined;
      if (result.acquired) {
        // An answer that took more than half the ttl (a slow or paused backend, or a blocked
        // event loop) is not handed out at once: the lock could be lost, or be already, before
        // the caller's work starts. One more attempt, with the same token, takes the grant again
        // with a fresh ttl; if that answer is late too, the lock is handed out only while still
        // valid. Otherwise (or out of wait) the cancel gives it back: a slow client does not keep
        // a free key from others for its whole wait.
        const now = monotonicNow();
        if (now - sentAt <= ttl / 2 || (declined && validityDeadline(sentAt, ttl) > now)) {
          lock = host.hold(keys, ref, result.fencingTokens, ttl, renew, sentAt, ttl);
        } else if (declined || deadline - now <= 0) {
          break;
        } else {
          declined = true;
          signal?.throwIfAborted();
          stopping.throwIfAborted();
          continue;
        }
      } else {
        leftState = queueFor > 0; // a busy try without queueing leaves no trace
        retryAfter = result.retryAfter;
        const remaining = deadline - monotonicNow();
        if (remaining > 0 && !handoff) {
          if (!waiter) {
            waiter = new WakeWaiter(signal ? [signal, stopping] : [stopping]);
            if (wokenEarly) waiter.wake();
          }
          await waiter.park(Math.min(recheckAt, monotonicNow() + result.retryAfter, deadline));
        } else if (remaining <= 0 && !handoff) {
          break;
        }
        if (handoff) lock = takeHandoff(host, keys, ref, handoff, ttl, renew, sentAt);
      }
      if (lock) {
        leftState = false;
        if (signal?.aborted || stopping.aborted) {
          // Never returned: drop it, and let `cancel` free it.
          lock.discard();
          host.cancelInBackground(ref, ttl);
          signal?.throwIfAborted();
          stopping.throwIfAborted();
        }
        return lock;
      }
    }
  } finally {
    unsubscribe?.();
    // The caller's answer does not wait for the clean-up: it runs (and is retried) behind it.
    if (leftState) host.cancelInBackground(ref, Math.max(ttl, wait));
  }
  throw new LockNotAcquiredError(keys[0], keys, Math.round(monotonicNow() - started), retryAfter);
}

/**
 * Takes a lock a release handed to us, without another round trip: the reservation lasts at
 * least `handoff.ttl` from `sentAt` (our attempt the handoff served was sent then); the renewal
 * scheduler claims the full ttl (see `GrantedLock.claiming`). Declines when too little of the
 * reservation is left, in which case the next attempt claims it the usual way.
 */
function takeHandoff(
  host: AcquireHost,
  keys: readonly string[],
  ref: BackendLockRef,
  handoff: BackendHandoff,
  ttl: number,
  renew: boolean,
  sentAt: number,
): GrantedLock | undefined {
  const validFor = Math.min(handoff.ttl, ttl);
  if (validityDeadline(sentAt, validFor) - monotonicNow() < validFor / 2) return undefined;
  return host.hold(keys, ref, handoff.fencingTokens, ttl, renew, sentAt, validFor);
}
