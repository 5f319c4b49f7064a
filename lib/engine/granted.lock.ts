import type { BackendLockRef } from '../backends/lock-backend.interface';
import { LockError } from '../errors/lock.error';
import { LockLostError } from '../errors/lock-lost.error';
import { monotonicNow, toEpoch } from './clock';
import { CompactList, compactList, firstItem, itemCount, listItems } from './compact.list';
import type { Lock } from './lock.interface';
import { toTtl } from './lock-options.validator';

/** What a granted lock needs from the engine that issued it. */
export interface LockOwner {
  /** Sends one owner-checked extension; resolves the backend's answer. */
  sendExtend(lock: GrantedLock, ttl: number): Promise<boolean>;
  /** Sends one owner-checked release; resolves whether the grant was still ours. */
  sendRelease(lock: GrantedLock): Promise<boolean>;
  /**
   * Releases, owner-checked and in the background, a grant the backend may still hold for nobody;
   * the engine retries it and settles it before the backend closes.
   */
  releaseOrphan(lock: GrantedLock): Promise<void>;
  /** Counts `call` as clean-up in flight, which shutdown settles before closing the backend. */
  watch(call: Promise<unknown>): void;
  /** Called once, when the lock stops being held for whatever reason. */
  forget(lock: GrantedLock): void;
  /**
   * Called when the lock's renewal times changed: an extension answered `true` (`outcome`), or
   * failed with `outcome` (an error) and must be retried.
   */
  rescheduled(lock: GrantedLock, outcome: unknown): void;
  /** Monotonic ms until which the backend's shared lease is alive (`Infinity`: no lease). */
  leaseDeadline(): number;
  /** The backend, named in the error of a fencing token asked of a backend that issues none. */
  readonly backend?: { readonly name: string };
  /** What makes a user key the backend's key (`keyPrefix` + key). */
  readonly defaults: { readonly keyPrefix: string };
}

/** One extension of one lock, from send to answer. */
export interface Extension {
  /** Monotonic ms at which it was sent. */
  readonly sentAt: number;
  /** The ttl that was sent. */
  readonly ttl: number;
}

/** The extension in flight, and what waits for its answer. */
interface PendingExtension extends Extension {
  /**
   * Settles when the answer is recorded. Made only when something waits for it (a manual extend
   * behind this one, an orphan release): background renewals, by far the most, need none.
   */
  answered: Promise<void> | undefined;
  resolveAnswered: (() => void) | undefined;
  /** The lock was lost while this extension was in flight: the orphan release waits for it. */
  releaseAfter: boolean;
}

/**
 * What a lock needs only once its signal is read, or it is released or lost: one object made then
 * rather than four fields (32 bytes) on every held lock.
 */
interface LockEnd {
  lostError: LockLostError | undefined;
  releasing: Promise<void> | undefined;
  /** The orphan release started once the extension in flight at the loss answered. */
  orphanRelease: Promise<void> | undefined;
  controller: AbortController | undefined;
}

type State = 'held' | 'releasing' | 'released' | 'lost';

/*
 * A lock's state, whether its last extension failed, whether it renews and whether it still has
 * to claim its full ttl, packed in one small integer rather than a field each, on each of up to
 * 100,000 held locks.
 */
const STATES: readonly State[] = ['held', 'releasing', 'released', 'lost'];
const STATE_MASK = 3;
const RETRYING = 4;
const RENEW = 8;
const CLAIMING = 16;

/**
 * A monotonic time as the whole ms at or before it. A lock's times are stored so: a field that
 * only ever holds small integers is kept in the object itself, whereas a fractional one is a
 * separate 16-byte heap number per lock (per time). Rounding down makes a deadline earlier, never
 * later. (Past 2^31 ms, about 24.8 days of process uptime, V8 boxes them again: more heap, same
 * behaviour.)
 */
function wholeMs(time: number): number {
  return Math.floor(time);
}

const abortedGetter = Object.getOwnPropertyDescriptor(AbortSignal.prototype, 'aborted')?.get;

/** The tokens of a lock from a backend without fencing: one shared empty list. */
const NO_TOKENS: readonly number[] = Object.freeze([]);

/**
 * One grant made by the backend for one acquisition, and the single owner of its lifecycle:
 * held → (extending) → released | lost. Every transition happens here, once, whoever triggers it
 * (a renewal, a manual extend, a release, the backend's loss report, the validity deadline,
 * shutdown), and so do the decisions that follow from it: whether the backend may still hold the
 * grant for nobody (then it is released, once, as an orphan) and when the signal aborts.
 *
 * An application may hold 100,000 of these at once, so a held lock keeps only what renewal and
 * validity read: no backend ref (its keys are the user keys with the owner's prefix, rebuilt for
 * each call), no array for a single key or fencing token, and the state of the rare transitions
 * in objects made when they happen.
 */
export class GrantedLock implements Lock {
  readonly token: string;
  /** Monotonic ms (whole, see {@link wholeMs}) at which the next background renewal is due. */
  nextRenewAt: number;
  /** Monotonic ms (whole) after which the grant itself may have ended (the lease aside). */
  private ownValidUntil: number;
  /**
   * The state (`STATES` index), `RETRYING` (the last extension failed: its retry is due at
   * `nextRenewAt`, never early in a batch), `RENEW` and `CLAIMING` (see {@link claiming}).
   */
  private flags: number;
  /**
   * The extension in flight. One at a time: two overlapping extensions could be applied in one
   * order and answered in the other, leaving the local deadline later than the server's.
   */
  private pending: PendingExtension | undefined;
  private end: LockEnd | undefined;
  /**
   * This lock's index in its owner's renewal queue, -1 when not queued. Kept and updated by the
   * RenewalScheduler alone: a field here rather than a Map entry per lock over there.
   */
  queueIndex = -1;
  /** The user keys. */
  private readonly userKeys: CompactList<string>;
  /** One per key; empty from a backend without fencing tokens. */
  private readonly tokens: CompactList<number>;

  /**
   * @param ref the acquisition's backend ref: its keys are the owner's `keyPrefix` + `keys` (the
   *   acquire loop makes them so), and only its token is kept
   */
  constructor(
    private readonly owner: LockOwner,
    keys: readonly string[],
    ref: BackendLockRef,
    tokens: readonly number[],
    public ttl: number,
    renew: boolean,
    sentAt: number,
    /** How long the grant is valid from `sentAt`, in ms, when less than `ttl` (a handoff). */
    validFor: number = ttl,
  ) {
    this.token = ref.token;
    this.flags = (renew ? RENEW : 0) | (validFor < ttl ? CLAIMING : 0);
    this.userKeys = compactList(keys);
    // A count that does not match the keys' stays a list, which `fencingTokens` refuses.
    this.tokens =
      tokens.length === 0
        ? NO_TOKENS
        : tokens.length === keys.length
          ? compactList(tokens)
          : tokens;
    this.ownValidUntil = wholeMs(validityDeadline(sentAt, validFor));
    // From `validFor`: a reserved lock is claimed well before its reservation ends, also when the
    // first claim failed; without renewal, at once.
    this.nextRenewAt = renew || validFor >= ttl ? wholeMs(sentAt + validFor / 3) : wholeMs(sentAt);
  }

  /**
   * A lock handed over on a reservation shorter than its ttl, until an extension claimed the full
   * ttl. The renewal scheduler claims it like a renewal: at its first renewal, at a third of the
   * reservation (a short locked section, the usual contended case, so costs no call for it), or
   * at once without renewal; a failed claim is retried like a failed renewal.
   */
  get claiming(): boolean {
    return (this.flags & CLAIMING) !== 0;
  }

  /** Whether the renewal scheduler extends this lock: `renew`, or a claim still owed. */
  get extendsInBackground(): boolean {
    return (this.flags & (RENEW | CLAIMING)) !== 0;
  }

  private get state(): State {
    return STATES[this.flags & STATE_MASK];
  }

  private set state(state: State) {
    this.flags = (this.flags & ~STATE_MASK) | STATES.indexOf(state);
  }

  private get retrying(): boolean {
    return (this.flags & RETRYING) !== 0;
  }

  private set retrying(retrying: boolean) {
    this.flags = retrying ? this.flags | RETRYING : this.flags & ~RETRYING;
  }

  get key(): string {
    return firstItem(this.userKeys);
  }

  get keys(): readonly string[] {
    return listItems(this.userKeys);
  }

  /** The keys as the backend knows them, made for the call that needs them. */
  get backendKeys(): readonly string[] {
    const prefix = this.owner.defaults.keyPrefix;
    const keys = this.userKeys;
    return typeof keys === 'string' ? [prefix + keys] : keys.map((key) => prefix + key);
  }

  /** What backend calls on this grant take, made for the call that needs it. */
  get ref(): BackendLockRef {
    return { keys: this.backendKeys, token: this.token };
  }

  /**
   * Monotonic ms from which this lock may join an earlier renewal batch: ttl/6 before it is due,
   * half its renewal period; a retry after a failure only when it is due. (A handed-over lock
   * reserved for less than its ttl may join a batch that early too, ttl/6 before its first
   * renewal, often from its creation on: that claims its full ttl early, in a call sent anyway.)
   */
  get renewFrom(): number {
    return this.retrying ? this.nextRenewAt : this.nextRenewAt - this.ttl / 6;
  }

  /**
   * Monotonic ms after which we can no longer be sure the backend holds the lock for us: the
   * earliest of the grant's own validity and the backend's shared lease.
   */
  get validUntil(): number {
    return Math.min(this.ownValidUntil, this.owner.leaseDeadline());
  }

  /** Neither released, being released nor lost (read without checking the validity deadline). */
  get live(): boolean {
    return this.state === 'held';
  }

  /** An extension of this lock is in flight. */
  get extending(): boolean {
    return this.pending !== undefined;
  }

  get fencingToken(): number {
    const tokens = this.tokens;
    return typeof tokens === 'number' ? tokens : this.fencingTokens[0];
  }

  get fencingTokens(): readonly number[] {
    const tokens = listItems(this.tokens);
    // Never a made-up number: a token that could go backwards defeats its only purpose.
    if (tokens.length !== this.keyCount) {
      const backend = this.owner.backend?.name ?? 'lock';
      throw new LockError(
        `Lock "${this.key}" has no fencing token: the ${backend} backend issues no fencing tokens ` +
          '(its servers share no counter that could only increase); use a backend with fencing ' +
          '(memory, redis, etcd) where the protected storage must reject stale writers',
      );
    }
    return tokens;
  }

  get signal(): AbortSignal {
    this.checkValidity();
    const end = this.ending();
    if (!end.controller) {
      end.controller = new AbortController();
      if (this.state === 'lost') end.controller.abort(end.lostError);
      else if (this.state === 'released') end.controller.abort(this.releasedReason());
      else this.watchReads(end.controller.signal);
    }
    return end.controller.signal;
  }

  get held(): boolean {
    return this.checkValidity() === 'held';
  }

  get expiresAt(): number {
    return toEpoch(this.validUntil);
  }

  /** The error that ended this lock, if it was lost. */
  get lossError(): LockLostError | undefined {
    return this.end?.lostError;
  }

  /**
   * Extends the lock now (owner-checked); waits for an extension already in flight first.
   *
   * @throws TypeError for an invalid ttl, before any backend call
   * @throws LockLostError when the lock is gone; LockBackendError when the backend failed
   */
  async extend(ttl?: number): Promise<void> {
    const next = ttl === undefined ? this.ttl : toTtl(ttl, 'ttl');
    for (let i = 0; this.pending && i < 100; i++) await this.answered(this.pending);
    if (this.checkValidity() !== 'held') throw this.notHeldError();
    const extension = this.beginExtension(next);
    if (!extension) throw this.notHeldError();
    let ok: boolean;
    try {
      ok = await this.owner.sendExtend(this, next);
    } catch (err) {
      this.endExtension(extension, err);
      throw err;
    }
    this.endExtension(extension, ok);
    if (this.state !== 'held') throw this.notHeldError();
  }

  release(): Promise<void> {
    if (this.checkValidity() === 'lost') return Promise.reject(this.lossError);
    if (this.state === 'releasing' && this.end?.releasing) return this.end.releasing;
    if (this.state !== 'held') return Promise.resolve();
    this.state = 'releasing';
    const end = this.ending();
    end.releasing = this.owner.sendRelease(this).then(
      (ok) => {
        if (ok) {
          if (this.state === 'releasing') this.finish('released');
          return;
        }
        // The release deleted whatever was still ours: nothing is left to release.
        this.lose('it had expired or been taken by another owner before it was released', {
          mayHold: false,
        });
        throw this.lossError;
      },
      (err: unknown) => {
        // Renewal stops and the lock ends on its own (its ttl; etcd: the deletion the session owes).
        if (this.state === 'releasing') this.finish('released');
        throw err;
      },
    );
    return end.releasing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }

  /**
   * Starts an extension with `ttl` unless the lock is not held or one is already in flight; pass
   * the result to {@link endExtension} with the backend's answer.
   */
  beginExtension(ttl: number): Extension | undefined {
    if (this.checkValidity() !== 'held' || this.pending) return undefined;
    const pending: PendingExtension = {
      sentAt: monotonicNow(),
      ttl,
      answered: undefined,
      resolveAnswered: undefined,
      releaseAfter: false,
    };
    this.pending = pending;
    return pending;
  }

  /**
   * Records the answer to an extension: `true` renews the validity from its send time, `false`
   * means the grant is gone, an error leaves the lock as it was and schedules a quick retry (the
   * validity deadline still ends it).
   */
  endExtension(extension: Extension, outcome: boolean | unknown): void {
    const pending = this.pending;
    this.pending = undefined;
    if (pending?.releaseAfter) {
      // Lost meanwhile: unless the answer says the grant is gone, it may be held for nobody.
      pending.releaseAfter = false;
      if (outcome !== false) this.ending().orphanRelease = this.owner.releaseOrphan(this);
    }
    pending?.resolveAnswered?.();
    if (this.state !== 'held') return; // released or lost meanwhile: nothing to renew
    if (outcome === true) {
      this.ttl = extension.ttl;
      this.ownValidUntil = wholeMs(validityDeadline(extension.sentAt, extension.ttl));
      this.nextRenewAt = wholeMs(extension.sentAt + extension.ttl / 3);
      this.retrying = false;
      this.flags &= ~CLAIMING;
    } else if (outcome === false) {
      this.lose('it expired or was taken by another owner before it could be extended', {
        mayHold: this.keyCount > 1,
      });
      return;
    } else {
      // Soon, and well before the validity deadline (a handoff's may be a short reservation).
      const now = monotonicNow();
      const left = Math.max(1, (this.validUntil - now) / 3);
      this.nextRenewAt = wholeMs(now + Math.min(Math.max(this.ttl / 10, 10), 1000, left));
      this.retrying = true;
    }
    this.owner.rescheduled(this, outcome);
  }

  /**
   * Marks the lock lost, once, and aborts its signal with a `LockLostError`. `mayHold`: the
   * backend may still hold (part of) the grant for nobody, so it is released, owner-checked,
   * exactly once (after an extension in flight answers). Returns that release, if any.
   */
  lose(reason: string, options: { cause?: unknown; mayHold: boolean }): Promise<void> | undefined {
    if (this.state === 'lost' || this.state === 'released') return undefined;
    const end = this.ending();
    // A release of ours on the wire is the one release of this grant.
    const inFlight = this.state === 'releasing' ? end.releasing : undefined;
    end.lostError = new LockLostError(
      this.key,
      reason,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.finish('lost');
    if (inFlight) return inFlight.catch(() => undefined);
    if (!options.mayHold) return undefined;
    const pending = this.pending;
    if (pending) {
      pending.releaseAfter = true;
      const released = this.answered(pending).then(() => end.orphanRelease);
      this.owner.watch(released);
      return released;
    }
    return this.owner.releaseOrphan(this);
  }

  /**
   * Drops a lock that was never handed to a caller (its acquisition was aborted). Whatever the
   * backend holds is the caller's to clean up with `cancel`.
   */
  discard(): void {
    if (this.state === 'held') this.finish('released');
  }

  private get keyCount(): number {
    return itemCount(this.userKeys);
  }

  private ending(): LockEnd {
    this.end ??= {
      lostError: undefined,
      releasing: undefined,
      orphanRelease: undefined,
      controller: undefined,
    };
    return this.end;
  }

  /** Settles when `pending` is answered. */
  private answered(pending: PendingExtension): Promise<void> {
    pending.answered ??= new Promise<void>((resolve) => (pending.resolveAnswered = resolve));
    return pending.answered;
  }

  /** Checks the validity deadline now (a stalled event loop runs no timer) and returns the state. */
  private checkValidity(): State {
    if (this.state === 'held') {
      const now = monotonicNow();
      if (now >= this.ownValidUntil) {
        this.lose('its validity ran out before a renewal reached the backend', { mayHold: true });
      } else if (now >= this.owner.leaseDeadline()) {
        this.lose("the backend's session lease ran out before it was kept alive", {
          mayHold: true,
        });
      }
    }
    return this.state;
  }

  private finish(state: 'released' | 'lost'): void {
    this.state = state;
    this.owner.forget(this);
    const end = this.end;
    end?.controller?.abort(state === 'lost' ? end.lostError : this.releasedReason());
  }

  /**
   * Makes `signal.aborted` and `signal.throwIfAborted()` check the validity when read, like
   * `lock.held`: code that kept the signal and reads it right after a stall must not see a lock
   * that someone else may already hold as still ours.
   */
  private watchReads(signal: AbortSignal): void {
    if (!abortedGetter) return;
    const read = abortedGetter;
    Object.defineProperty(signal, 'aborted', {
      configurable: true,
      enumerable: true,
      get: () => {
        this.checkValidity();
        return read.call(signal) as boolean;
      },
    });
    const throwIfAborted = signal.throwIfAborted.bind(signal);
    Object.defineProperty(signal, 'throwIfAborted', {
      configurable: true,
      value: () => {
        this.checkValidity();
        throwIfAborted();
      },
    });
  }

  private notHeldError(): Error {
    return this.end?.lostError ?? new LockError(`Lock "${this.key}" is no longer held`);
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
