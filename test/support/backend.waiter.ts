import type {
  BackendAcquireResult,
  BackendHandoff,
  BackendLockRef,
  LockBackend,
} from 'nestjs-distributed-lock/backend';
import { sleep } from './async.helpers';

/** How {@link waitForGrant} waits. */
export interface WaitOptions {
  /** ttl of the grant, ms. */
  readonly ttl: number;
  /** How long to wait, ms. */
  readonly wait: number;
  /** Called once, after the first attempt that came back busy (the token is queued). */
  readonly onQueued?: () => void;
  /** Extra ms to sleep after each park: a slow process that may miss its claim window. */
  readonly lag?: () => number;
  /** Retry attempts that fail while the wait lasts (a server that is restarting). */
  readonly retryErrors?: boolean;
}

/** What {@link waitForGrant} got, and how. */
export interface Waited {
  readonly fencingTokens: readonly number[];
  readonly attempts: number;
  readonly wakes: number;
}

/**
 * Waits for `ref` the way the engine does, at backend level: numbered attempts that queue for the
 * rest of the wait; between them, parks until a wake-up (taking a handoff for the latest attempt
 * by claiming it with `extend`; re-attempting by `recheckAfter` when one is given) or until
 * `retryAfter`. Cancels and rejects when the wait runs out. Bounded in rounds and time.
 */
export async function waitForGrant(
  backend: LockBackend,
  ref: BackendLockRef,
  options: WaitOptions,
): Promise<Waited> {
  const { ttl, wait } = options;
  const deadline = Date.now() + wait;
  // Written by the wake-up listener while an attempt is in flight or parked.
  const woken: { handoff?: BackendHandoff; recheckAt?: number } = {};
  let wakes = 0;
  let resume: (() => void) | undefined;
  const stop = backend.onWake(ref.token, (offer?: BackendHandoff, recheckAfter?: number) => {
    wakes++;
    if (offer) woken.handoff = offer;
    woken.recheckAt = recheckAfter === undefined ? Date.now() : Date.now() + recheckAfter;
    resume?.();
  });
  const handedOver = (): BackendHandoff | undefined => woken.handoff;
  let queued = false;
  try {
    for (let attempt = 1; attempt <= 1000 && Date.now() < deadline; attempt++) {
      // Earlier wake-ups are forgotten right before each attempt, as the engine does.
      woken.handoff = undefined;
      woken.recheckAt = undefined;
      let result: BackendAcquireResult | undefined;
      try {
        result = await backend.acquire({
          ...ref,
          ttl,
          queueFor: Math.max(1, deadline - Date.now()),
          attempt,
        });
      } catch (err) {
        if (!options.retryErrors) throw err;
      }
      if (result?.acquired)
        return { fencingTokens: result.fencingTokens, attempts: attempt, wakes };
      if (result && !queued) {
        queued = true;
        options.onQueued?.();
      }
      const fallbackAt = Date.now() + (result ? result.retryAfter : 100);
      for (let park = 0; park < 1000; park++) {
        // Read through a function: the listener writes `woken` behind the compiler's back.
        const offer = handedOver();
        if (offer?.attempt === attempt) {
          const tokens = offer.fencingTokens;
          if ((await backend.extend([{ ...ref, ttl }]))[0]) {
            return { fencingTokens: tokens, attempts: attempt, wakes };
          }
          break;
        }
        const until = Math.min(woken.recheckAt ?? fallbackAt, fallbackAt, deadline);
        if (until <= Date.now()) break;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, until - Date.now());
          resume = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        resume = undefined;
      }
      const lag = options.lag?.() ?? 0;
      if (lag > 0) await sleep(lag);
    }
  } finally {
    stop();
  }
  await backend.cancel(ref).catch(() => undefined);
  throw new Error(`${ref.token} did not get ${ref.keys.join(', ')} within ${wait} ms`);
}
