import type {
  BackendAcquireRequest,
  BackendHandoff,
  BackendAcquireResult,
  BackendExtendRequest,
  BackendLockInfo,
  BackendLockRef,
  LockBackend,
  Unsubscribe,
  WakeListener,
} from '../lock-backend.interface';
import { monotonicNow } from '../../engine/clock';
import { assertKnownOptions, toTtl } from '../../engine/lock-options.validator';
import { LockBackendError } from '../../errors/lock-backend.error';
import { WakeRegistry } from '../wake.registry';

/** Tuning of {@link MemoryLockBackend}. */
export interface MemoryLockBackendOptions {
  /**
   * How long, in ms, a lock handed to a queued waiter on release stays reserved for it before the
   * waiter claims it with its own ttl. Bounds how long a waiter that vanished can block the queue.
   * Default 2000 (never more than the waiter's ttl).
   */
  claimWindow?: number;
}

interface Waiter {
  readonly token: string;
  readonly keys: readonly string[];
  ttl: number;
  deadline: number;
  /** The waiter's attempt that last refreshed this entry (reported with a handoff). */
  attempt: number;
}

/**
 * One key: its holder (inline, `token` undefined when free) and its waiters. A holder past
 * `expiresAt` is no holder: every read checks the time, so a held key needs no timer of its
 * own; one is armed only while somebody waits (to hand the key over at expiry), see `arm`.
 */
interface KeyState {
  token: string | undefined;
  fence: number;
  expiresAt: number;
  /** Undefined until the first waiter: most keys never have one. */
  waiting: Waiting | undefined;
}

/** The waiters of a key, and the timer that hands it to them at its holder's expiry. */
interface Waiting {
  queue: Waiter[];
  /** Fires at (or after) the holder's `expiresAt` while the queue is not empty. */
  timer: NodeJS.Timeout | undefined;
  /** When `timer` fires (monotonic ms). */
  timerAt: number;
  /**
   * The `setTimeout` that made `timer`. A test that installs or removes jest's fake timers swaps
   * the global, and a timer of the other clock never fires: such a timer is made again.
   */
  timerFrom: typeof setTimeout | undefined;
}

const NO_WAITERS: readonly Waiter[] = [];

/** The key's queue, empty when nobody waits. */
function queueOf(state: KeyState): readonly Waiter[] {
  return state.waiting?.queue ?? NO_WAITERS;
}

/** Keys the sweep looks at per tick, at least; more when there are many (see `sweep`). */
const SWEEP_MIN = 1_000;
const SWEEP_EVERY_MS = 1_000;

/**
 * The embedded backend: locks live in this process only. Same semantics as a remote backend (TTL
 * expiry, owner tokens, fencing tokens, FIFO handoff with wake-ups), so code and tests move to
 * Redis or etcd unchanged; it cannot exclude other processes.
 *
 * Memory is bounded by the keys currently held or awaited: a key's state is dropped as soon as it
 * is released or cancelled with nobody waiting, and within ten seconds of expiring (a sweep; a
 * held key has no timer of its own, its expiry is checked on every read). Fencing tokens come
 * from one counter for the whole backend, which makes them strictly increasing per key without
 * remembering keys that are gone.
 */
export class MemoryLockBackend implements LockBackend {
  readonly name = 'memory';
  /** Locks live in this process. */
  readonly endpoint = 'in-process';
  private readonly keys = new Map<string, KeyState>();
  private readonly listeners = new WakeRegistry();
  private readonly claimWindow: number;
  private fence = 0;
  private closed = false;
  /** Drops keys that expired with nobody waiting; runs while any key is tracked. */
  private sweeper: NodeJS.Timeout | undefined;
  private sweepCursor: IterableIterator<[string, KeyState]> | undefined;
  /** Keys per tick in the current pass over the map. */
  private sweepBudget = SWEEP_MIN;
  /** The `setInterval` that made `sweeper` (see `Waiting.timerFrom`). */
  private sweepFrom: typeof setInterval | undefined;

  constructor(options: MemoryLockBackendOptions = {}) {
    assertKnownOptions(options, ['claimWindow'], 'MemoryLockBackend options');
    this.claimWindow = toTtl(options.claimWindow ?? 2000, 'MemoryLockBackend claimWindow');
  }

  /**
   * Number of keys with state kept: held or awaited, and expired ones the sweep has not dropped
   * yet. For tests of bounded memory. `@internal`, stripped from the published types: no public
   * call can show it, and users have no use for it.
   * @internal
   */
  get trackedKeys(): number {
    return this.keys.size;
  }

  /** Resolves while the backend is open (see {@link LockBackend.ping}). */
  async ping(): Promise<void> {
    if (this.closed) throw new LockBackendError(this.name, 'ping', 'the backend is closed');
  }

  async acquire(request: BackendAcquireRequest): Promise<BackendAcquireResult> {
    const now = monotonicNow();
    const { keys, token, ttl } = request;
    // Plain loops, no closures: this runs on every acquisition.
    for (let i = 0; i < keys.length; i++) this.purgeQueue(keys[i], now);
    if (this.takeable(keys, token, now)) {
      const fencingTokens: number[] = [];
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i];
        const state = this.state(key);
        this.dequeue(state, token);
        const fence = held(state, now) && state.token === token ? state.fence : ++this.fence;
        this.hold(state, key, token, fence, ttl, now);
        fencingTokens.push(fence);
      }
      return { acquired: true, fencingTokens };
    }
    if (request.queueFor !== undefined && request.queueFor > 0) {
      for (const key of keys) {
        const state = this.state(key);
        const waiting = (state.waiting ??= {
          queue: [],
          timer: undefined,
          timerAt: 0,
          timerFrom: undefined,
        });
        const queue = waiting.queue;
        const entry = queue.find((w) => w.token === token);
        const attempt = request.attempt ?? 0;
        if (entry) {
          entry.deadline = now + request.queueFor;
          entry.ttl = ttl;
          entry.attempt = attempt;
        } else {
          queue.push({ token, keys, ttl, deadline: now + request.queueFor, attempt });
        }
        if (held(state, now)) this.arm(state, waiting, key, now);
      }
    }
    // No wake-up may come if a message is lost (remote backends) or a queue entry ahead of us
    // expires: re-check when whatever blocks us ends at the latest.
    let retryAfter = 1;
    for (const key of keys) {
      const state = this.keys.get(key);
      if (!state) continue;
      if (held(state, now) && state.token !== token) {
        retryAfter = Math.max(retryAfter, state.expiresAt - now);
      } else {
        const first = queueOf(state)[0];
        if (first && first.token !== token) retryAfter = Math.max(retryAfter, first.deadline - now);
      }
    }
    return { acquired: false, retryAfter: Math.ceil(retryAfter) };
  }

  async extend(requests: readonly BackendExtendRequest[]): Promise<boolean[]> {
    const now = monotonicNow();
    return requests.map((request) => {
      if (!this.ownsAll(request, now)) return false;
      // Extending also claims a key handed to this token by a release.
      for (const key of request.keys) {
        const state = this.keys.get(key) as KeyState;
        this.hold(state, key, request.token, state.fence, request.ttl, now);
      }
      return true;
    });
  }

  async release(ref: BackendLockRef): Promise<boolean> {
    const now = monotonicNow();
    let owned = true;
    const keys = ref.keys;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i];
      const state = this.keys.get(key);
      if (state === undefined || state.token !== ref.token) {
        owned = false;
        continue;
      }
      // Expired: not ours any more, but its state goes (or passes to a waiter) all the same.
      if (!held(state, now)) owned = false;
      this.free(key, state);
    }
    return owned;
  }

  async cancel(ref: BackendLockRef): Promise<void> {
    for (const key of ref.keys) {
      const state = this.keys.get(key);
      if (!state) continue;
      const wasFirst = queueOf(state)[0]?.token === ref.token;
      this.dequeue(state, ref.token);
      // Freeing also hands the key on: to the waiter behind a first one that gave up, too.
      if (state.token === ref.token || (wasFirst && !held(state, monotonicNow()))) {
        this.free(key, state);
      } else this.dropIfIdle(key, state);
    }
  }

  async inspect(key: string): Promise<BackendLockInfo> {
    const state = this.keys.get(key);
    const now = monotonicNow();
    if (!state || !held(state, now)) return { held: false };
    return {
      held: true,
      ttl: Math.max(0, Math.ceil(state.expiresAt - now)),
      fencingToken: state.fence,
    };
  }

  onWake(token: string, listener: WakeListener): Unsubscribe {
    return this.listeners.add(token, listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const state of this.keys.values()) clearTimeout(state.waiting?.timer);
    this.keys.clear();
    this.listeners.clear();
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    this.sweepCursor = undefined;
  }

  /** Whether `token` may take every key now: free and unawaited, handed to it, or its own. */
  private takeable(keys: readonly string[], token: string, now: number): boolean {
    for (let i = 0; i < keys.length; i++) {
      const state = this.keys.get(keys[i]);
      if (!state) continue;
      if (held(state, now)) {
        if (state.token !== token) return false; // else handed to us, or ours already
      } else {
        const first = queueOf(state)[0];
        if (first && first.token !== token) return false;
      }
    }
    return true;
  }

  private ownsAll(ref: BackendLockRef, now: number): boolean {
    return ref.keys.every((key) => {
      const state = this.keys.get(key);
      return state !== undefined && state.token === ref.token && held(state, now);
    });
  }

  private state(key: string): KeyState {
    let state = this.keys.get(key);
    if (!state) {
      state = {
        token: undefined,
        fence: 0,
        expiresAt: 0,
        waiting: undefined,
      };
      this.keys.set(key, state);
      if ((this.sweeper === undefined || this.sweepFrom !== setInterval) && !this.closed) {
        if (this.sweeper) clearInterval(this.sweeper);
        this.sweepFrom = setInterval;
        this.sweeper = setInterval(() => this.sweep(), SWEEP_EVERY_MS);
        this.sweeper.unref();
      }
    }
    return state;
  }

  private hold(
    state: KeyState,
    key: string,
    token: string,
    fence: number,
    ttl: number,
    now: number,
  ): void {
    state.token = token;
    state.fence = fence;
    state.expiresAt = now + ttl;
    const waiting = state.waiting;
    if (waiting && waiting.queue.length > 0) this.arm(state, waiting, key, now);
  }

  /**
   * Makes sure the key's expiry hands it to its waiters: one timer per awaited key, due at its
   * holder's `expiresAt`; an extend moves `expiresAt` later without touching the timer, which
   * then re-arms itself when it fires (only a shorter expiry re-arms it here).
   */
  private arm(state: KeyState, waiting: Waiting, key: string, now: number): void {
    const due = state.expiresAt;
    if (waiting.timer !== undefined) {
      if (waiting.timerAt <= due && waiting.timerFrom === setTimeout) return;
      clearTimeout(waiting.timer);
    }
    waiting.timerFrom = setTimeout;
    waiting.timerAt = due;
    waiting.timer = setTimeout(
      () => this.expire(key, state, waiting),
      Math.max(1, Math.ceil(due - now)),
    );
    waiting.timer.unref();
  }

  private expire(key: string, state: KeyState, waiting: Waiting): void {
    waiting.timer = undefined;
    if (this.keys.get(key) !== state || state.waiting !== waiting) return;
    const now = monotonicNow();
    if (held(state, now)) {
      if (waiting.queue.length > 0) this.arm(state, waiting, key, now);
      return;
    }
    if (state.token !== undefined) this.free(key, state);
    else this.purgeQueue(key, now);
  }

  /** Drops the holder of `key` and hands the key to the first live waiter that can take all its keys. */
  private free(key: string, state = this.keys.get(key)): void {
    if (!state) return;
    state.token = undefined;
    // The usual release: nobody waits, the key's state goes.
    if (queueOf(state).length === 0) {
      this.dropIfIdle(key, state);
      return;
    }
    const now = monotonicNow();
    this.purgeQueue(key, now);
    const next = queueOf(state)[0];
    if (next && this.canHandTo(next, now)) {
      const reserve = Math.min(this.claimWindow, next.ttl);
      const fencingTokens = next.keys.map((k) => {
        const s = this.state(k);
        this.dequeue(s, next.token);
        this.hold(s, k, next.token, ++this.fence, reserve, now);
        return this.fence;
      });
      this.wake(next.token, { attempt: next.attempt, fencingTokens, ttl: reserve });
    }
    // Otherwise the first waiter still needs other keys; it is served when they are released.
    this.dropIfIdle(key, state);
  }

  private canHandTo(waiter: Waiter, now: number): boolean {
    return waiter.keys.every((key) => {
      const state = this.keys.get(key);
      return !!state && !held(state, now) && queueOf(state)[0]?.token === waiter.token;
    });
  }

  private purgeQueue(key: string, now: number): void {
    const state = this.keys.get(key);
    const waiting = state?.waiting;
    // Called on every acquire: no array allocated unless an entry is dead.
    if (!state || !waiting || !waiting.queue.some((w) => w.deadline <= now)) return;
    waiting.queue = waiting.queue.filter((w) => w.deadline > now);
    // A dead entry may have been all that kept a free key from its next waiter.
    if (!held(state, now)) this.free(key, state);
    else this.dropIfIdle(key, state);
  }

  private dequeue(state: KeyState, token: string): void {
    const queue = state.waiting?.queue;
    if (!queue || queue.length === 0) return;
    const i = queue.findIndex((w) => w.token === token);
    if (i >= 0) queue.splice(i, 1);
  }

  private dropIfIdle(key: string, state: KeyState): void {
    if (state.token !== undefined && state.expiresAt > monotonicNow()) return;
    if (queueOf(state).length > 0) return;
    if (this.keys.get(key) !== state) return;
    clearTimeout(state.waiting?.timer);
    this.keys.delete(key);
  }

  /**
   * Drops keys whose holder expired with nobody waiting (their state is all that is left of
   * them): a slice of the map per tick, at least SWEEP_MIN keys and the largest tenth of the map
   * seen in the pass, so a pass over the keys present at its start takes ten ticks at most and
   * no tick stalls the event loop on a large map.
   */
  private sweep(): void {
    const now = monotonicNow();
    if (this.sweepCursor === undefined) {
      this.sweepCursor = this.keys.entries();
      this.sweepBudget = SWEEP_MIN;
    }
    // Grows with the map within a pass: keys appended behind the cursor faster than it moves
    // would otherwise keep one pass, and its budget, going for ever.
    this.sweepBudget = Math.max(this.sweepBudget, Math.ceil(this.keys.size / 10));
    for (let i = 0; i < this.sweepBudget; i++) {
      const next = this.sweepCursor.next();
      if (next.done) {
        this.sweepCursor = undefined;
        break;
      }
      const [key, state] = next.value;
      if (!held(state, now) && queueOf(state).length === 0) {
        this.dropIfIdle(key, state);
      }
    }
    if (this.keys.size === 0 && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
      this.sweepCursor = undefined;
    }
  }

  private wake(token: string, handoff: BackendHandoff): void {
    if (!this.listeners.has(token)) return;
    // Asynchronously, like a message from a remote server, so no engine code runs inside ours.
    queueMicrotask(() => this.listeners.wake(token, handoff));
  }
}

/** Whether the key has a holder whose ttl has not run out. */
function held(state: KeyState, now: number): boolean {
  return state.token !== undefined && state.expiresAt > now;
}
