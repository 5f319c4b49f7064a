import { DeadlineQueue } from './etcd-deadline.queue';
import type { EtcdLockRange } from './etcd.keys';
import type { EtcdSession } from './etcd.session';
import type { EtcdFollow, EtcdQueueWatcher } from './etcd-queue.watcher';

/** A token queued on its keys: member keys in etcd, ordered by create revision. */
export interface EtcdQueuedWaiter {
  readonly token: string;
  /** Lock keys as the engine gave them (a handoff turns the waiter into a held lock). */
  readonly keys: readonly string[];
  /** Member keys, one per lock key. */
  readonly members: readonly Buffer[];
  readonly session: EtcdSession;
  /** The per-lock ttl written in the members' value. */
  readonly ttl: number;
  /** Create revisions of the members: the queue position, and the fencing tokens once granted. */
  revisions: readonly number[];
  /** The engine's attempt whose answer registered the current follows. */
  attempt: number | undefined;
  /** Follows of the members ahead, in every blocked key. */
  follows: EtcdFollow[];
}

/** What one attempt read ahead of a waiter in one blocked key. */
export interface EtcdAhead {
  readonly range: EtcdLockRange;
  /** The waiter's own member in that key. */
  readonly own: Buffer;
  /** Members ahead of the waiter's own, nearest first; empty when the read could not tell. */
  readonly members: readonly Buffer[];
  /** Whether `members` is everything ahead: once they are all deleted, the key is the waiter's. */
  readonly complete: boolean;
}

/** Progress of a waiter in one blocked key, between two attempts. */
interface KeyWait {
  /** Followed members ahead still there. */
  left: number;
  readonly complete: boolean;
}

/** What the follows registered by one attempt have seen so far. */
interface FollowRound {
  readonly waits: readonly KeyWait[];
  /** One of the waiter's own members was deleted: its place is gone, no handoff is possible. */
  broken: boolean;
}

/** What the waiter registry asks of its backend. */
export interface EtcdWaiterHooks {
  /** Whether an attempt of `token` is running (its queue entry is being refreshed). */
  isRunning(token: string): boolean;
  /** How long to wait before looking again at an entry whose attempt is running, in ms. */
  readonly retryDelay: number;
  /** The entry was not refreshed within its `queueFor`: delete its members. */
  expired(waiter: EtcdQueuedWaiter): void;
  /** Every member ahead left: the lock is the waiter's. */
  handedOver(waiter: EtcdQueuedWaiter): void;
  /** Something ahead left, or may have: the waiter should try again. */
  nudge(waiter: EtcdQueuedWaiter): void;
}

/**
 * The tokens this backend has queued, with their `queueFor` deadlines and their follows of the
 * members ahead in each blocked key (through {@link EtcdQueueWatcher}), which decide between a
 * handoff and a nudge.
 */
export class EtcdWaiterRegistry {
  private readonly waiters = new Map<string, EtcdQueuedWaiter>();
  private readonly deadlines = new DeadlineQueue((token) => this.due(token));

  constructor(
    private readonly watcher: EtcdQueueWatcher,
    private readonly hooks: EtcdWaiterHooks,
  ) {}

  /** The queue entry of `token`, if any. */
  get(token: string): EtcdQueuedWaiter | undefined {
    return this.waiters.get(token);
  }

  /**
   * Records `token` as queued with `members` at `revisions` (or updates its entry), until
   * `queueFor` ms from now unless an attempt refreshes it.
   */
  enqueue(
    entry: Pick<EtcdQueuedWaiter, 'token' | 'keys' | 'members' | 'session' | 'ttl' | 'revisions'>,
    queueFor: number,
  ): EtcdQueuedWaiter {
    let waiter = this.waiters.get(entry.token);
    if (
      waiter &&
      (waiter.session !== entry.session ||
        waiter.ttl !== entry.ttl ||
        waiter.members.length !== entry.members.length ||
        waiter.members.some((member, i) => !member.equals(entry.members[i])))
    ) {
      this.take(entry.token);
      waiter = undefined;
    }
    if (waiter) {
      waiter.revisions = entry.revisions;
    } else {
      waiter = { ...entry, attempt: undefined, follows: [] };
      this.waiters.set(entry.token, waiter);
    }
    this.deadlines.schedule(entry.token, performance.now() + queueFor);
    return waiter;
  }

  /**
   * Replaces the follows of `waiter` by the members of `aheads`, as read by attempt `attempt` at
   * `revision`. Once every key's complete set of members ahead is deleted, the lock is the
   * waiter's (nobody queues ahead of an existing member): `handedOver`. When a key's followed
   * members are gone but more were ahead, or what is ahead is unknown, `nudge`: the next attempt
   * reads further.
   */
  follow(
    waiter: EtcdQueuedWaiter,
    aheads: readonly EtcdAhead[],
    revision: number,
    attempt: number | undefined,
  ): void {
    this.unfollowAll(waiter);
    waiter.attempt = attempt;
    if (aheads.some((ahead) => ahead.members.length === 0)) {
      // After the attempt has answered: a caller may only listen for its resume from then on.
      setImmediate(() => this.waiters.get(waiter.token) === waiter && this.hooks.nudge(waiter));
      return;
    }
    const round: FollowRound = {
      waits: aheads.map((ahead) => ({ left: ahead.members.length, complete: ahead.complete })),
      broken: false,
    };
    aheads.forEach((ahead, i) => {
      // Our own member too: if it vanishes (its lease was revoked under us), the deletions ahead
      // no longer make the lock ours.
      waiter.follows.push(
        this.watcher.follow(ahead.range, ahead.own, revision, () => this.broken(waiter, round)),
      );
      for (const member of ahead.members) {
        waiter.follows.push(
          this.watcher.follow(ahead.range, member, revision, (certain) =>
            this.gone(waiter, round, i, certain),
          ),
        );
      }
    });
  }

  /** Removes the queue entry of `token` and returns it; deleting its members is up to the caller. */
  take(token: string): EtcdQueuedWaiter | undefined {
    const waiter = this.waiters.get(token);
    if (!waiter) return undefined;
    this.waiters.delete(token);
    this.deadlines.cancel(token);
    this.unfollowAll(waiter);
    return waiter;
  }

  /** Removes and returns every entry of `session` (its lease takes their members along). */
  takeSession(session: EtcdSession): EtcdQueuedWaiter[] {
    const taken: EtcdQueuedWaiter[] = [];
    for (const waiter of [...this.waiters.values()]) {
      if (waiter.session !== session) continue;
      this.take(waiter.token);
      taken.push(waiter);
    }
    return taken;
  }

  /** Forgets every entry and stops the timer (the backend is closing). */
  clear(): void {
    for (const token of [...this.waiters.keys()]) this.take(token);
    this.deadlines.clear();
  }

  private gone(
    waiter: EtcdQueuedWaiter,
    round: FollowRound,
    index: number,
    certain: boolean,
  ): void {
    if (this.waiters.get(waiter.token) !== waiter || round.broken) return;
    if (!certain) {
      this.hooks.nudge(waiter);
      return;
    }
    const wait = round.waits[index];
    wait.left -= 1;
    if (wait.left > 0) return; // still behind others: no reason to try again yet
    if (!wait.complete) {
      this.hooks.nudge(waiter);
      return;
    }
    // Another key still has members ahead: trying now could only find that key busy.
    if (round.waits.some((other) => other.left > 0 || !other.complete)) return;
    this.hooks.handedOver(waiter);
  }

  private broken(waiter: EtcdQueuedWaiter, round: FollowRound): void {
    if (this.waiters.get(waiter.token) !== waiter || round.broken) return;
    round.broken = true;
    this.hooks.nudge(waiter);
  }

  private unfollowAll(waiter: EtcdQueuedWaiter): void {
    for (const follow of waiter.follows) this.watcher.unfollow(follow);
    waiter.follows = [];
  }

  private due(token: string): void {
    if (this.hooks.isRunning(token)) {
      // An attempt is refreshing the entry right now; look again once it has had its budget.
      this.deadlines.schedule(token, performance.now() + this.hooks.retryDelay);
      return;
    }
    const waiter = this.take(token);
    if (waiter) this.hooks.expired(waiter);
  }
}
