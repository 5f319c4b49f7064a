import type { EtcdDeletionWatcher } from './etcd-deletion.watcher';
import type { EtcdRange } from './etcd.keys';

/** What one attempt read ahead of a waiter in one key it is blocked on. */
export interface EtcdAhead {
  readonly range: EtcdRange;
  /** The waiter's own member in that key. */
  readonly own: Buffer;
  /** Members ahead of it, nearest first; empty when the read could not tell. */
  readonly members: readonly Buffer[];
  /** Whether `members` is everything ahead. */
  readonly complete: boolean;
}

/** `mine`: every member ahead is gone, the lock is the waiter's. `retry`: read again. */
export type EtcdTurn = 'mine' | 'retry';

/**
 * Follows, for one waiter, the members ahead of it in every blocked key, as read at `revision`,
 * and calls `onTurn` once:
 * - `mine` when every member ahead in every key was deleted: nobody can queue ahead of an
 *   existing member (create revisions only grow), so the waiter's members are now the lowest;
 * - `retry` when a key had more members ahead than were read and those are gone, when the
 *   waiter's own member vanished (its place is lost), or when the watch could not tell.
 * Only deletions count, and only the waiter right behind a release hears of it: no herd.
 *
 * @returns stops following without a call
 */
export function followQueue(
  watcher: EtcdDeletionWatcher,
  aheads: readonly EtcdAhead[],
  revision: number,
  onTurn: (turn: EtcdTurn) => void,
): () => void {
  let done = false;
  const stops: (() => void)[] = [];
  const stop = (): void => {
    done = true;
    for (const unfollow of stops.splice(0)) unfollow();
  };
  const finish = (turn: EtcdTurn): void => {
    if (done) return;
    stop();
    onTurn(turn);
  };
  if (aheads.some((ahead) => ahead.members.length === 0)) {
    // After the attempt has answered: its caller listens for the wake-up only from then on.
    setImmediate(finish, 'retry');
    return stop;
  }
  const left = aheads.map((ahead) => ahead.members.length);
  aheads.forEach((ahead, i) => {
    stops.push(watcher.follow(ahead.range, ahead.own, revision, () => finish('retry')));
    for (const member of ahead.members) {
      stops.push(
        watcher.follow(ahead.range, member, revision, (certain) => {
          if (!certain) return finish('retry');
          if (--left[i] > 0) return;
          if (!ahead.complete) return finish('retry');
          // Another key still has members ahead: trying now could only find it busy.
          if (left.every((n) => n === 0)) finish('mine');
        }),
      );
    }
  });
  return stop;
}
