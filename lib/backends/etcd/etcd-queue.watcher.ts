import type { Etcd3, IKeyValue, IWatchResponse, Watcher } from 'etcd3';
import type { EtcdLockRange } from './etcd.keys';
import { EtcdRpc, sleep } from './etcd.rpc';
import { memberReadOp } from './etcd-txn.ops';

/** How long a range watch outlives its last follower, in ms: queues come back soon. */
const LINGER_MS = 5_000;
/** Recent deletions remembered per range watch (see {@link EtcdQueueWatcher.follow}). */
const LOG_LIMIT = 1_024;

/** A follow of one member key, as returned by {@link EtcdQueueWatcher.follow}. */
export interface EtcdFollow {
  /** The member key followed. */
  readonly member: Buffer;
}

interface Follower extends EtcdFollow {
  readonly id: string;
  readonly watch: RangeWatch;
  /** Revision at which the member was seen to exist. */
  readonly revision: number;
  readonly onGone: (certain: boolean) => void;
  active: boolean;
}

interface RangeWatch {
  readonly id: string;
  readonly watcher: Watcher;
  /** Removes our listeners from `watcher` (etcd3 keeps its own on it). */
  unlisten(): void;
  /** Every deletion with a revision above this is delivered; `undefined` while (re)connecting. */
  coveredFrom: number | undefined;
  /** Deletions delivered since `coveredFrom`, member key (latin1) → revision, oldest first. */
  readonly deleted: Map<string, number>;
  /** Highest revision whose deletions may be missing from `deleted`. */
  prunedThrough: number;
  /** Active followers by member key (latin1). */
  readonly followers: Map<string, Set<Follower>>;
  count: number;
  linger?: NodeJS.Timeout;
}

/**
 * Tells queued waiters when members they follow (those ahead of them, and their own) are deleted,
 * through one etcd watch per lock key (its whole member range, deletions only) shared by every
 * local waiter of that key and kept for a while after the last one left, so that the waiters of a
 * busy key do not create a watch per wait.
 *
 * Why not a watch per member from the revision of the read: etcd serves a watch whose start
 * revision it has already passed from its "unsynced" group, which it catches up only every 100 ms.
 * Under contention the store moves on between a waiter's read and its watch, so every wait paid
 * up to 100 ms. A watch created without a start revision is synced (live) instead, and the gap
 * between the read and the watch is closed here: a follow registered at a revision the watch
 * covers is checked against the deletions already delivered; one it does not cover (the watch is
 * still connecting, or reconnected later) is checked by reading the member once the watch is live.
 */
export class EtcdQueueWatcher {
  private readonly watches = new Map<string, RangeWatch>();
  /** Watch cancellations on the wire: closing the client under them makes etcd3 retry forever. */
  private readonly cancelling = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly client: Etcd3,
    private readonly rpc: EtcdRpc,
  ) {}

  /**
   * Calls `onGone(true)` once `member` of `range`, seen to exist at `revision`, is deleted, or
   * `onGone(false)` when that can no longer be told (the watch failed, a check failed); then the
   * follow ends. Never calls it synchronously.
   */
  follow(
    range: EtcdLockRange,
    member: Buffer,
    revision: number,
    onGone: (certain: boolean) => void,
  ): EtcdFollow {
    if (this.closed) return { member };
    const watch = this.watchFor(range);
    const id = member.toString('latin1');
    const follower: Follower = { member, id, watch, revision, onGone, active: true };
    let set = watch.followers.get(id);
    if (!set) {
      set = new Set();
      watch.followers.set(id, set);
    }
    set.add(follower);
    watch.count += 1;
    if (watch.linger) {
      clearTimeout(watch.linger);
      watch.linger = undefined;
    }
    if (watch.coveredFrom === undefined) return follower; // checked once connected
    if (revision >= watch.coveredFrom && revision >= watch.prunedThrough) {
      // Every deletion after `revision` is either in the log already or still to come.
      const deletedAt = watch.deleted.get(id);
      if (deletedAt !== undefined && deletedAt > revision) {
        setImmediate(() => this.fire(follower, true));
      }
    } else {
      this.check(watch, [follower]);
    }
    return follower;
  }

  /** Ends a follow without calling its `onGone`. Idempotent. */
  unfollow(follow: EtcdFollow): void {
    const follower = follow as Partial<Follower>;
    if (follower.active) this.detach(follower as Follower);
  }

  /** Stops every watch; waits (boundedly) until etcd has confirmed the cancellations. */
  async close(): Promise<void> {
    this.closed = true;
    for (const watch of this.watches.values()) {
      if (watch.linger) clearTimeout(watch.linger);
      for (const set of watch.followers.values()) for (const f of set) f.active = false;
      this.stop(watch);
    }
    this.watches.clear();
    await Promise.race([Promise.all(this.cancelling), sleep(this.rpc.timeout)]);
  }

  private watchFor(range: EtcdLockRange): RangeWatch {
    const id = range.start.toString('latin1');
    const existing = this.watches.get(id);
    if (existing) return existing;
    const watcher = this.client
      .watch()
      .inRange({ start: range.start, end: range.end })
      .only('delete')
      .watcher();
    const onConnected = (res: IWatchResponse): void =>
      this.connected(watch, Number(res.header.revision));
    const onDisconnected = (): void => {
      watch.coveredFrom = undefined;
    };
    const onDelete = (kv: IKeyValue): void => this.deletedKey(watch, kv);
    // etcd cancelled the watch (compaction, permissions): nothing more will come from it.
    const onError = (): void => this.failed(watch);
    const watch: RangeWatch = {
      id,
      watcher,
      unlisten: () => {
        watcher.off('connected', onConnected);
        watcher.off('disconnected', onDisconnected);
        watcher.off('delete', onDelete);
        watcher.off('error', onError);
        // etcd3 emits 'error' on the watcher; without a listener that would throw.
        watcher.on('error', () => undefined);
      },
      coveredFrom: undefined,
      deleted: new Map(),
      prunedThrough: 0,
      followers: new Map(),
      count: 0,
    };
    watcher.on('connected', onConnected);
    watcher.on('disconnected', onDisconnected);
    watcher.on('delete', onDelete);
    watcher.on('error', onError);
    this.watches.set(id, watch);
    return watch;
  }

  /** The watch is live from `revision` on (first connect or reconnect). */
  private connected(watch: RangeWatch, revision: number): void {
    watch.coveredFrom = revision;
    watch.deleted.clear();
    watch.prunedThrough = revision;
    const unchecked: Follower[] = [];
    for (const set of watch.followers.values()) {
      for (const follower of set) if (follower.revision < revision) unchecked.push(follower);
    }
    if (unchecked.length > 0) this.check(watch, unchecked);
  }

  private deletedKey(watch: RangeWatch, kv: IKeyValue): void {
    const id = kv.key.toString('latin1');
    const revision = Number(kv.mod_revision);
    watch.deleted.delete(id);
    watch.deleted.set(id, revision);
    if (watch.deleted.size > LOG_LIMIT) {
      const [oldest, at] = watch.deleted.entries().next().value as [string, number];
      watch.deleted.delete(oldest);
      watch.prunedThrough = Math.max(watch.prunedThrough, at);
    }
    const set = watch.followers.get(id);
    if (!set) return;
    // A deletion at or before the revision a follower saw the member at was of an earlier key.
    for (const follower of [...set]) if (revision > follower.revision) this.fire(follower, true);
  }

  private failed(watch: RangeWatch): void {
    if (this.watches.get(watch.id) !== watch) return;
    this.watches.delete(watch.id);
    if (watch.linger) clearTimeout(watch.linger);
    // etcd3 already detached a watcher it reports cancelled: no cancel request to send.
    watch.unlisten();
    for (const set of [...watch.followers.values()]) {
      for (const follower of [...set]) this.fire(follower, false);
    }
  }

  /**
   * Reads followed members now that the watch is live: a member found missing was deleted after
   * the follower saw it; one found present will be deleted later, within the watch's cover.
   */
  private check(watch: RangeWatch, followers: readonly Follower[]): void {
    this.rpc
      .run('acquire', (options) =>
        this.client.kv.txn({ success: followers.map((f) => memberReadOp(f.member)) }, options),
      )
      .then(
        (response) =>
          followers.forEach((follower, i) => {
            if (Number(response.responses[i]?.response_range?.count ?? 0) === 0) {
              this.fire(follower, true);
            }
          }),
        () => followers.forEach((follower) => this.fire(follower, false)),
      );
  }

  private fire(follower: Follower, certain: boolean): void {
    if (!follower.active) return;
    this.detach(follower);
    try {
      follower.onGone(certain);
    } catch {
      // One follower's failure must not stop the others.
    }
  }

  private detach(follower: Follower): void {
    follower.active = false;
    const watch = follower.watch;
    const set = watch.followers.get(follower.id);
    if (set?.delete(follower) && set.size === 0) watch.followers.delete(follower.id);
    watch.count -= 1;
    if (watch.count > 0 || this.closed || this.watches.get(watch.id) !== watch) return;
    watch.linger = setTimeout(() => {
      watch.linger = undefined;
      if (watch.count > 0 || this.watches.get(watch.id) !== watch) return;
      this.watches.delete(watch.id);
      this.stop(watch);
    }, LINGER_MS);
    watch.linger.unref();
  }

  private stop(watch: RangeWatch): void {
    watch.unlisten();
    const cancelled = watch.watcher.cancel().catch(() => undefined);
    this.cancelling.add(cancelled);
    void cancelled.finally(() => this.cancelling.delete(cancelled));
  }
}
