import type { IKeyValue } from 'etcd3';
import { EtcdLockRange, memberToken } from './etcd.keys';
import type { EtcdSession } from './etcd.session';

/** A lock this backend holds: its member keys in etcd. */
export interface EtcdHeldLock {
  readonly token: string;
  /** Lock keys as the engine gave them (reported when the lock is lost). */
  readonly keys: readonly string[];
  /** Member keys, one per lock key. */
  readonly members: readonly Buffer[];
  readonly session: EtcdSession;
  /** Create revisions of the members: the fencing tokens. */
  readonly revisions: readonly number[];
  /**
   * When its ttl ends unless extended, monotonic ms (`performance.now()`), for `inspect` and
   * `retryAfter` only: the engine ends a lock at its validity deadline and releases it then.
   */
  deadline: number;
}

/**
 * The locks this backend holds, by owner token. A shared session lease cannot expire one lock;
 * the engine, which owns every lock's validity, releases a lock whose ttl ran out, and the lease
 * covers a process that died.
 */
export class EtcdHeldRegistry {
  private readonly locks = new Map<string, EtcdHeldLock>();

  /** The lock `token` holds, if any. */
  get(token: string): EtcdHeldLock | undefined {
    return this.locks.get(token);
  }

  /** Whether `lock` is still the current grant of its token (not released, expired or replaced). */
  isCurrent(lock: EtcdHeldLock): boolean {
    return this.locks.get(lock.token) === lock;
  }

  /** Records a grant (replacing any earlier one of its token). */
  add(lock: EtcdHeldLock): void {
    this.locks.set(lock.token, lock);
  }

  /** Forgets the lock of `token` and returns it; deleting its keys is up to the caller. */
  take(token: string): EtcdHeldLock | undefined {
    const lock = this.locks.get(token);
    if (!lock) return undefined;
    this.locks.delete(token);
    return lock;
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

  /** Forgets every lock (the backend is closing). */
  clear(): void {
    this.locks.clear();
  }
}
