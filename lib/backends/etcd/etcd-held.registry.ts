import type { IKeyValue } from 'etcd3';
import { DeadlineQueue } from './etcd-deadline.queue';
import { EtcdLockRange, memberToken } from './etcd.keys';
import type { EtcdSession } from './etcd.session';

/** A lock this backend holds: its member keys in etcd and its local per-lock deadline. */
export interface EtcdHeldLock {
  readonly token: string;
  /** Lock keys as the engine gave them (reported when the lock is lost). */
  readonly keys: readonly string[];
  /** Member keys, one per lock key. */
  readonly members: readonly Buffer[];
  readonly session: EtcdSession;
  /** Create revisions of the members: the fencing tokens. */
  readonly revisions: readonly number[];
  /** Local deadline, monotonic ms (`performance.now()`). */
  deadline: number;
}

/**
 * The locks this backend holds, by owner token, each with its local deadline. A shared session
 * lease cannot expire one lock, so the deadline is what ends a lock whose owner stopped renewing
 * it while the process lives on: when it passes, the lock is forgotten and `onExpired` deletes its
 * keys.
 */
export class EtcdHeldRegistry {
  private readonly locks = new Map<string, EtcdHeldLock>();
  private readonly deadlines = new DeadlineQueue((token) => this.due(token));

  constructor(private readonly onExpired: (lock: EtcdHeldLock) => void) {}

  /** The lock `token` holds, if any. */
  get(token: string): EtcdHeldLock | undefined {
    return this.locks.get(token);
  }

  /** Whether `lock` is still the current grant of its token (not released, expired or replaced). */
  isCurrent(lock: EtcdHeldLock): boolean {
    return this.locks.get(lock.token) === lock;
  }

  /** Records a grant (replacing any earlier one of its token) and arms its deadline. */
  add(lock: EtcdHeldLock): void {
    this.locks.set(lock.token, lock);
    this.deadlines.schedule(lock.token, lock.deadline);
  }

  /** Moves the deadline of a current lock. */
  extend(lock: EtcdHeldLock, deadline: number): void {
    lock.deadline = deadline;
    this.deadlines.schedule(lock.token, deadline);
  }

  /** Forgets the lock of `token` and returns it; deleting its keys is up to the caller. */
  take(token: string): EtcdHeldLock | undefined {
    const lock = this.locks.get(token);
    if (!lock) return undefined;
    this.locks.delete(token);
    this.deadlines.cancel(token);
    return lock;
  }

  /** Ends the lock of `token` now, as if its deadline had passed. */
  expire(token: string): void {
    const lock = this.take(token);
    if (lock) this.onExpired(lock);
  }

  /** Forgets and returns every lock of `session` (its lease takes their keys along). */
  takeSession(session: EtcdSession): EtcdHeldLock[] {
    const taken: EtcdHeldLock[] = [];
    for (const lock of [...this.locks.values()]) {
      if (lock.session !== session) continue;
      this.take(lock.token);
      taken.push(lock);
    }
    return taken;
  }

  /** Remaining local ttl, in ms, when `owner` is a member of a lock held here; else `undefined`. */
  remaining(range: EtcdLockRange, owner: IKeyValue): number | undefined {
    const token = memberToken(range, owner.key);
    const lock = token === undefined ? undefined : this.locks.get(token);
    if (!lock || !lock.members.some((member) => member.equals(owner.key))) return undefined;
    return Math.max(0, Math.min(lock.deadline - performance.now(), lock.session.remaining()));
  }

  /** Forgets every lock and stops the timer (the backend is closing). */
  clear(): void {
    this.locks.clear();
    this.deadlines.clear();
  }

  private due(token: string): void {
    const lock = this.locks.get(token);
    if (!lock) return;
    if (lock.deadline > performance.now()) {
      this.deadlines.schedule(token, lock.deadline);
      return;
    }
    this.expire(token);
  }
}
