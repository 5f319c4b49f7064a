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

interface Holder {
  token: string;
  fence: number;
  expiresAt: number;
  timer: NodeJS.Timeout;
}

interface Waiter {
  readonly token: string;
  readonly keys: readonly string[];
  ttl: number;
  deadline: number;
  /** The waiter's attempt that last refreshed this entry (reported with a handoff). */
  attempt: number;
}

interface KeyState {
  holder: Holder | undefined;
  queue: Waiter[];
}

/**
 * The embedded backend: locks live in this process only. Same semantics as a remote backend (TTL
 * expiry, owner tokens, fencing tokens, FIFO handoff with wake-ups), so code and tests move to
 * Redis or etcd unchanged; it cannot exclude other processes.
 *
 * Memory is bounded by the keys currently held or awaited: a key's state is dropped as soon as it
 * has neither a holder nor a waiter. Fencing tokens come from one counter for the whole backend,
 * which makes them strictly increasing per key without remembering keys that are gone.
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

  constructor(options: MemoryLockBackendOptions = {}) {
    assertKnownOptions(options, ['claimWindow'], 'MemoryLockBackend options');
    this.claimWindow = toTtl(options.claimWindow ?? 2000, 'MemoryLockBackend claimWindow');
  }

  /**
   * Number of keys with a holder or a waiter, for tests of bounded memory. `@internal`, stripped
   * from the published types: no public call can show it, and users have no use for it.
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
    if (this.takeable(keys, token)) {
      const fencingTokens: number[] = [];
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i];
        const state = this.state(key);
        this.dequeue(state, token);
        const holder = state.holder;
        const fence = holder && holder.token === token ? holder.fence : ++this.fence;
        this.hold(key, state, token, fence, ttl, now);
        fencingTokens.push(fence);
      }
      return { acquired: true, fencingTokens };
    }
    if (request.queueFor !== undefined && request.queueFor > 0) {
      for (const key of keys) {
        const state = this.state(key);
        const entry = state.queue.find((w) => w.token === token);
        const attempt = request.attempt ?? 0;
        if (entry) {
          entry.deadline = now + request.queueFor;
          entry.ttl = ttl;
          entry.attempt = attempt;
        } else {
          state.queue.push({ token, keys, ttl, deadline: now + request.queueFor, attempt });
        }
      }
    }
    // No wake-up may come if a message is lost (remote backends) or a queue entry ahead of us
    // expires: re-check when whatever blocks us ends at the latest.
    let retryAfter = 1;
    for (const key of keys) {
      const state = this.keys.get(key);
      if (state?.holder && state.holder.token !== token) {
        retryAfter = Math.max(retryAfter, state.holder.expiresAt - now);
      } else if (state && state.queue.length > 0 && state.queue[0].token !== token) {
        retryAfter = Math.max(retryAfter, state.queue[0].deadline - now);
      }
    }
    return { acquired: false, retryAfter: Math.ceil(retryAfter) };
  }

  async extend(requests: readonly BackendExtendRequest[]): Promise<boolean[]> {
    return requests.map((request) => {
      if (!this.ownsAll(request)) return false;
      // Extending also claims a key handed to this token by a release.
      for (const key of request.keys) {
        const state = this.keys.get(key) as KeyState;
        const holder = state.holder as Holder;
        this.hold(key, state, holder.token, holder.fence, request.ttl);
      }
      return true;
    });
  }

  async release(ref: BackendLockRef): Promise<boolean> {
    let owned = true;
    const keys = ref.keys;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i];
      const state = this.keys.get(key);
      if (state?.holder?.token === ref.token) this.free(key, state);
      else owned = false;
    }
    return owned;
  }

  async cancel(ref: BackendLockRef): Promise<void> {
    for (const key of ref.keys) {
      const state = this.keys.get(key);
      if (!state) continue;
      this.dequeue(state, ref.token);
      if (state.holder?.token === ref.token) this.free(key);
      else this.dropIfIdle(key, state);
    }
  }

  async inspect(key: string): Promise<BackendLockInfo> {
    const holder = this.keys.get(key)?.holder;
    if (!holder) return { held: false };
    return {
      held: true,
      ttl: Math.max(0, Math.ceil(holder.expiresAt - monotonicNow())),
      fencingToken: holder.fence,
    };
  }

  onWake(token: string, listener: WakeListener): Unsubscribe {
    return this.listeners.add(token, listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const state of this.keys.values()) if (state.holder) clearTimeout(state.holder.timer);
    this.keys.clear();
    this.listeners.clear();
  }

  /** Whether `token` may take every key now: free and unawaited, handed to it, or its own. */
  private takeable(keys: readonly string[], token: string): boolean {
    for (let i = 0; i < keys.length; i++) {
      const state = this.keys.get(keys[i]);
      if (!state) continue;
      if (state.holder) {
        if (state.holder.token !== token) return false; // else handed to us, or ours already
      } else if (state.queue.length > 0 && state.queue[0].token !== token) {
        return false;
      }
    }
    return true;
  }

  private ownsAll(ref: BackendLockRef): boolean {
    return ref.keys.every((key) => {
      const holder = this.keys.get(key)?.holder;
      return holder !== undefined && holder.token === ref.token;
    });
  }

  private state(key: string): KeyState {
    let state = this.keys.get(key);
    if (!state) this.keys.set(key, (state = { holder: undefined, queue: [] }));
    return state;
  }

  private hold(
    key: string,
    state: KeyState,
    token: string,
    fence: number,
    ttl: number,
    now = monotonicNow(),
  ): void {
    if (state.holder) clearTimeout(state.holder.timer);
    const timer = setTimeout(() => {
      if (state.holder?.token === token) this.free(key);
    }, ttl);
    timer.unref();
    state.holder = { token, fence, expiresAt: now + ttl, timer };
  }

  /** Drops the holder of `key` and hands the key to the first live waiter that can take all its keys. */
  private free(key: string, state = this.keys.get(key)): void {
    if (!state) return;
    if (state.holder) clearTimeout(state.holder.timer);
    state.holder = undefined;
    // The usual release: nobody waits, the key's state goes.
    if (state.queue.length === 0) {
      this.dropIfIdle(key, state);
      return;
    }
    const now = monotonicNow();
    this.purgeQueue(key, now);
    const next = state.queue[0];
    if (next && this.canHandTo(next)) {
      const reserve = Math.min(this.claimWindow, next.ttl);
      const fencingTokens = next.keys.map((k) => {
        const s = this.state(k);
        this.dequeue(s, next.token);
        this.hold(k, s, next.token, ++this.fence, reserve);
        return this.fence;
      });
      this.wake(next.token, { attempt: next.attempt, fencingTokens, ttl: reserve });
    }
    // Otherwise the first waiter still needs other keys; it is served when they are released.
    this.dropIfIdle(key, state);
  }

  private canHandTo(waiter: Waiter): boolean {
    return waiter.keys.every((key) => {
      const state = this.keys.get(key);
      return !!state && !state.holder && state.queue[0]?.token === waiter.token;
    });
  }

  private purgeQueue(key: string, now: number): void {
    const state = this.keys.get(key);
    // Called on every acquire: no array allocated unless an entry is dead.
    if (!state || state.queue.length === 0 || !state.queue.some((w) => w.deadline <= now)) return;
    const live = state.queue.filter((w) => w.deadline > now);
    state.queue = live;
    // A dead entry may have been all that kept a free key from its next waiter.
    if (!state.holder) this.free(key);
    else this.dropIfIdle(key, state);
  }

  private dequeue(state: KeyState, token: string): void {
    if (state.queue.length === 0) return;
    const i = state.queue.findIndex((w) => w.token === token);
    if (i >= 0) state.queue.splice(i, 1);
  }

  private dropIfIdle(key: string, state: KeyState): void {
    if (!state.holder && state.queue.length === 0 && this.keys.get(key) === state)
      this.keys.delete(key);
  }

  private wake(token: string, handoff: BackendHandoff): void {
    if (!this.listeners.has(token)) return;
    // Asynchronously, like a message from a remote server, so no engine code runs inside ours.
    queueMicrotask(() => this.listeners.wake(token, handoff));
  }
}
