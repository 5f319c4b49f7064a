import { LockError } from '../errors/lock.error';
import { LockLostError } from '../errors/lock-lost.error';
import type { GrantedLock } from './granted.lock';
import type { Lock } from './lock.interface';

/**
 * The handle returned when an async call chain asks for keys it already holds (reentrancy).
 * Inherited keys make no second grant: they stay owned, renewed and released by the outer lock.
 * Keys the chain did not hold yet are covered by `own`, a fresh grant released with this handle.
 */
export class ReentrantLock implements Lock {
  readonly key: string;
  private combined: AbortSignal | undefined;
  private releasedByCaller = false;

  constructor(
    readonly keys: readonly string[],
    private readonly inherited: ReadonlyMap<string, Lock>,
    private readonly own: GrantedLock | undefined,
  ) {
    this.key = keys[0];
    for (const key of keys) {
      if (!inherited.has(key) && !own) throw new LockError(`no holder for key "${key}"`);
    }
  }

  /** The grant this handle made itself for the keys the chain did not hold yet, if any. */
  get ownGrant(): GrantedLock | undefined {
    return this.own;
  }

  /** Read when asked: a holder's fencingTokens throws on a backend without fencing tokens. */
  get fencingTokens(): readonly number[] {
    return this.keys.map((key) => {
      const holder = this.inherited.get(key) ?? this.own;
      if (!holder) throw new LockError(`no holder for key "${key}"`);
      return holder.fencingTokens[holder.keys.indexOf(key)];
    });
  }

  get signal(): AbortSignal {
    if (!this.combined) {
      const signals = [...new Set([...this.inherited.values()].map((lock) => lock.signal))];
      if (this.own) signals.push(this.own.signal);
      this.combined = signals.length === 1 ? signals[0] : AbortSignal.any(signals);
    }
    return this.combined;
  }

  get token(): string {
    return (this.own ?? this.inherited.get(this.key))?.token ?? '';
  }

  get fencingToken(): number {
    return this.fencingTokens[0];
  }

  get held(): boolean {
    if (this.releasedByCaller) return false;
    if (this.own && !this.own.held) return false;
    for (const lock of this.inherited.values()) if (!lock.held) return false;
    return true;
  }

  get expiresAt(): number {
    const all = [...this.inherited.values(), ...(this.own ? [this.own] : [])];
    return Math.min(...all.map((lock) => lock.expiresAt));
  }

  async extend(ttl?: number): Promise<void> {
    const all = new Set<Lock>([...this.inherited.values(), ...(this.own ? [this.own] : [])]);
    await Promise.all([...all].map((lock) => lock.extend(ttl)));
  }

  async release(): Promise<void> {
    if (this.releasedByCaller) return;
    this.releasedByCaller = true;
    if (this.own) await this.own.release();
    const lost = [...this.inherited.values()].find((lock) => signalLost(lock.signal));
    if (lost) throw lost.signal.reason;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

function signalLost(signal: AbortSignal): boolean {
  return signal.aborted && signal.reason instanceof LockLostError;
}
