import type { BackendLockRef } from '../backends/lock-backend.interface';
import { LockError } from '../errors/lock.error';
import { LockLostError } from '../errors/lock-lost.error';
import { monotonicNow, toEpoch } from './clock';
import type { Lock } from './lock.interface';

/** What a granted lock needs from the engine that issued it. */
export interface LockOwner {
  extendLock(lock: GrantedLock, ttl: number): Promise<void>;
  releaseLock(lock: GrantedLock): Promise<void>;
  /** Called once when the lock stops being held, whatever the reason. */
  forget(lock: GrantedLock): void;
}

type State = 'held' | 'releasing' | 'released' | 'lost';

/**
 * One grant made by the backend for one acquisition: the engine renews it, watches its validity
 * deadline, and aborts its signal when it is lost or released.
 */
export class GrantedLock implements Lock {
  readonly key: string;
  readonly fencingToken: number;
  /** Monotonic ms after which we can no longer be sure the backend still holds it for us. */
  validUntil: number;
  /** Monotonic ms at which the next background renewal is due. */
  nextRenewAt: number;
  /** Monotonic ms from which this lock may join an earlier renewal batch. */
  renewFrom: number;
  /**
   * The extension in flight for this lock (renewal, claim or manual extend), settled either way.
   * One at a time: two overlapping extensions could be applied in one order and answered in the
   * other, leaving the local deadline later than the server's.
   */
  pending: Promise<void> | undefined;
  /** Set when the backend said the grant is gone, so there is nothing left to release. */
  private gone = false;
  private state: State = 'held';
  private lostError: LockLostError | undefined;
  /** Created on first access of `signal`: most locks never have theirs read (hot path). */
  private controller: AbortController | undefined;

  constructor(
    private readonly owner: LockOwner,
    readonly keys: readonly string[],
    readonly ref: BackendLockRef,
    readonly fencingTokens: readonly number[],
    public ttl: number,
    readonly renew: boolean,
    sentAt: number,
    /** How long the grant is valid from `sentAt`, in ms, when less than `ttl` (a handoff). */
    validFor: number = ttl,
  ) {
    this.key = keys[0];
    this.fencingToken = fencingTokens[0];
    this.validUntil = validityDeadline(sentAt, validFor);
    // From `validFor`: a handed-over lock reserved for less than its ttl is renewed (claimed)
    // well before its reservation ends, also when the first claim failed.
    this.nextRenewAt = sentAt + validFor / 3;
    this.renewFrom = sentAt + validFor / 6;
  }

  /** An extension of this lock is in flight. */
  get renewing(): boolean {
    return this.pending !== undefined;
  }

  /** Lost without the backend saying so (validity ran out): the backend may still hold it. */
  get mayBeOrphaned(): boolean {
    return this.lostError !== undefined && !this.gone;
  }

  get token(): string {
    return this.ref.token;
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.state === 'lost') this.controller.abort(this.lostError);
      else if (this.state === 'released') this.controller.abort(this.releasedReason());
    }
    return this.controller.signal;
  }

  get held(): boolean {
    // Also checks the clock: a stalled event loop may not have run the deadline timer yet.
    return this.state === 'held' && monotonicNow() < this.validUntil;
  }

  get expiresAt(): number {
    return toEpoch(this.validUntil);
  }

  /** The error that ended this lock, if it was lost. */
  get lossError(): LockLostError | undefined {
    return this.lostError;
  }

  extend(ttl?: number): Promise<void> {
    if (this.lostError) return Promise.reject(this.lostError);
    if (this.state !== 'held') {
      return Promise.reject(
        new LockError(`Lock "${this.key}" was released; it cannot be extended`),
      );
    }
    return this.owner.extendLock(this, ttl ?? this.ttl);
  }

  release(): Promise<void> {
    if (this.lostError) return Promise.reject(this.lostError);
    if (this.state !== 'held') return Promise.resolve();
    this.state = 'releasing';
    return this.owner.releaseLock(this);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }

  /** Records a successful extension sent at monotonic `sentAt`. */
  renewed(sentAt: number, ttl: number): void {
    this.ttl = ttl;
    this.validUntil = validityDeadline(sentAt, ttl);
    this.nextRenewAt = sentAt + ttl / 3;
    this.renewFrom = sentAt + ttl / 6;
  }

  /**
   * Marks the lock lost, once: aborts the signal with a `LockLostError`. `gone`: the backend said
   * the grant no longer exists (else the engine still tries to release it).
   */
  lost(reason: string, cause?: unknown, gone = false): void {
    if (this.state === 'lost' || this.state === 'released') return;
    this.state = 'lost';
    this.gone = gone;
    this.lostError = new LockLostError(
      this.key,
      reason,
      cause === undefined ? undefined : { cause },
    );
    this.owner.forget(this);
    this.controller?.abort(this.lostError);
  }

  /** Marks the lock released by its owner. */
  released(): void {
    if (this.state === 'lost' || this.state === 'released') return;
    this.state = 'released';
    this.owner.forget(this);
    this.controller?.abort(this.releasedReason());
  }

  private releasedReason(): LockError {
    return new LockError(`Lock "${this.key}" was released`);
  }
}

/**
 * Local validity: the lock is ours until `ttl` after the request was sent, less a margin for the
 * server's clock running faster than ours and for timer lateness, so the holder hears of the
 * loss before the backend can grant the lock to anyone else.
 */
export function validityDeadline(sentAt: number, ttl: number): number {
  return sentAt + ttl - Math.min(ttl * 0.01 + 2, ttl / 2);
}
