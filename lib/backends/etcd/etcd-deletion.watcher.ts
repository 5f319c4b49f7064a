import type { IKeyValue, IWatchResponse, Watcher } from 'etcd3';
import { EtcdRange, kvsAt, readOp } from './etcd.keys';
import { withTimeout } from '../backend.timers';
import type { EtcdRpc } from './etcd.rpc';

/** How long a key's watch outlives its last follower, ms: busy keys come back soon. */
const LINGER_MS = 5_000;
/** Recent deletions remembered per watch, for follows registered just after them. */
const LOG_LIMIT = 1_024;

interface Follow {
  readonly id: string;
  /** Revision at which the member was seen to exist. */
  readonly revision: number;
  readonly onGone: (certain: boolean) => void;
}

interface KeyWatch {
  readonly watcher: Watcher;
  /** Revision from which every deletion is delivered; `undefined` until the watch is live. */
  liveFrom?: number;
  /** Deletions delivered, member id → revision, oldest first, at most {@link LOG_LIMIT}. */
  readonly deleted: Map<string, number>;
  /** Highest revision whose deletions may have been pruned from `deleted`. */
  prunedThrough: number;
  /** Active follows by member id. */
  readonly follows: Map<string, Set<Follow>>;
  count: number;
  linger?: NodeJS.Timeout;
  /** Removes our listeners (etcd3 keeps its own on the watcher). */
  unlisten(): void;
}

/**
 * Tells waiters when a member key is deleted, through ONE deletion watch per lock key (its whole
 * member range), shared by every local waiter of that key and kept a while after the last one.
 *
 * Not a watch per wait from the revision of the waiter's read, as etcd's Go package does: etcd
 * serves a watch that starts behind the store from its "unsynced" group, caught up only every
 * 100 ms, and under contention every handoff paid that. A watch created without a start revision
 * is live at once. The gap between a waiter's read and its follow is closed here: a follow at a
 * revision the watch covers is checked against the deletions already delivered; one from before
 * the watch went live is checked by reading the member once it is. The etcd3 client resumes a
 * watch after a reconnect from the last revision it saw, so the cover has no holes; if etcd cannot
 * resume it (compacted), every follow ends uncertain.
 */
export class EtcdDeletionWatcher {
  private readonly watches = new Map<string, KeyWatch>();
  /** Cancellations on the wire: closing the client under them makes etcd3 retry forever. */
  private readonly cancelling = new Set<Promise<unknown>>();
  private closed = false;

  constructor(private readonly rpc: EtcdRpc) {}

  /**
   * Calls `onGone(true)` once `member` of `range`, seen at `revision`, is deleted, or
   * `onGone(false)` when that can no longer be told; then the follow ends. Never synchronously.
   *
   * @returns ends the follow without a call
   */
  follow(
    range: EtcdRange,
    member: Buffer,
    revision: number,
    onGone: (certain: boolean) => void,
  ): () => void {
    if (this.closed) return () => undefined;
    const id = member.toString('latin1');
    const rangeId = range.start.toString('latin1');
    const watch = this.watches.get(rangeId) ?? this.open(rangeId, range);
    let active = true;
    const follow: Follow = {
      id,
      revision,
      onGone: (certain) => {
        if (!active) return;
        stop();
        onGone(certain);
      },
    };
    const stop = (): void => {
      active = false;
      const set = watch.follows.get(id);
      if (!set?.delete(follow)) return;
      if (set.size === 0) watch.follows.delete(id);
      if (--watch.count === 0) this.idle(rangeId, watch);
    };
    const set = watch.follows.get(id) ?? new Set();
    watch.follows.set(id, set.add(follow));
    watch.count += 1;
    clearTimeout(watch.linger);
    if (watch.liveFrom === undefined) return stop; // checked once live
    if (revision >= watch.liveFrom && revision >= watch.prunedThrough) {
      const deletedAt = watch.deleted.get(id);
      if (deletedAt !== undefined && deletedAt > revision) setImmediate(follow.onGone, true);
    } else {
      this.check([follow]);
    }
    return stop;
  }

  /** Stops every watch; waits, boundedly, for etcd to confirm the cancellations. */
  async close(): Promise<void> {
    this.closed = true;
    for (const watch of this.watches.values()) this.stop(watch);
    this.watches.clear();
    // Bounded by a timer cleared once they are confirmed, so closing never delays the exit.
    await withTimeout(
      Promise.all(this.cancelling),
      this.rpc.timeout,
      () => new Error('late'),
    ).catch(() => undefined);
  }

  private open(rangeId: string, range: EtcdRange): KeyWatch {
    const watcher = this.rpc.client
      .watch()
      .inRange({ start: range.start, end: range.end })
      .only('delete')
      .watcher();
    const onConnected = (res: IWatchResponse): void => {
      if (watch.liveFrom !== undefined) return; // resumed: nothing was missed
      const live = Number(res.header.revision);
      watch.liveFrom = watch.prunedThrough = live;
      const early = this.all(watch).filter((f) => f.revision < live);
      if (early.length > 0) this.check(early);
    };
    const onDelete = (kv: IKeyValue): void => this.deletedKey(watch, kv);
    // etcd cancelled the watch (compaction, permissions): nothing more will come from it.
    const onError = (): void => {
      if (this.watches.get(rangeId) === watch) this.watches.delete(rangeId);
      clearTimeout(watch.linger);
      watch.unlisten();
      for (const follow of this.all(watch)) follow.onGone(false);
    };
    const watch: KeyWatch = {
      watcher,
      deleted: new Map(),
      prunedThrough: 0,
      follows: new Map(),
      count: 0,
      unlisten: () => {
        watcher.off('connected', onConnected).off('delete', onDelete).off('error', onError);
        // etcd3 emits 'error' on the watcher; without a listener that would throw.
        watcher.on('error', () => undefined);
      },
    };
    watcher.on('connected', onConnected).on('delete', onDelete).on('error', onError);
    this.watches.set(rangeId, watch);
    return watch;
  }

  private deletedKey(watch: KeyWatch, kv: IKeyValue): void {
    const id = kv.key.toString('latin1');
    const revision = Number(kv.mod_revision);
    watch.deleted.delete(id);
    watch.deleted.set(id, revision);
    if (watch.deleted.size > LOG_LIMIT) {
      const [oldest, at] = watch.deleted.entries().next().value as [string, number];
      watch.deleted.delete(oldest);
      watch.prunedThrough = Math.max(watch.prunedThrough, at);
    }
    // A deletion at or before the revision a follow saw the member at was of an earlier key.
    for (const follow of [...(watch.follows.get(id) ?? [])]) {
      if (revision > follow.revision) follow.onGone(true);
    }
  }

  /** Reads members the watch may have missed: one found missing was deleted after it was seen. */
  private check(follows: readonly Follow[]): void {
    const reads = follows.map((follow) => readOp(Buffer.from(follow.id, 'latin1')));
    this.rpc.txn('acquire', { success: reads }).then(
      (response) =>
        follows.forEach((follow, i) => {
          if (kvsAt(response, i).length === 0) follow.onGone(true);
        }),
      () => follows.forEach((follow) => follow.onGone(false)),
    );
  }

  private idle(rangeId: string, watch: KeyWatch): void {
    if (this.closed || this.watches.get(rangeId) !== watch) return;
    watch.linger = setTimeout(() => {
      if (watch.count > 0 || this.watches.get(rangeId) !== watch) return;
      this.watches.delete(rangeId);
      this.stop(watch);
    }, LINGER_MS);
    watch.linger.unref();
  }

  private all(watch: KeyWatch): Follow[] {
    return [...watch.follows.values()].flatMap((set) => [...set]);
  }

  private stop(watch: KeyWatch): void {
    clearTimeout(watch.linger);
    watch.follows.clear();
    watch.unlisten();
    const cancelled = watch.watcher.cancel().catch(() => undefined);
    this.cancelling.add(cancelled);
    void cancelled.finally(() => this.cancelling.delete(cancelled));
  }
}
