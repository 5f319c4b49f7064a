/**
 * Redis key layout. For a lock key K (final, already prefixed by the engine, such as
 * `lock:order:1`) the backend uses at most three Redis keys:
 *
 *   {K}     HASH  the grant: `o` owner token, `f` fencing token, `c` = "1" while the lock was handed
 *                 to a queued waiter that has not claimed it yet. PX = the holder's ttl (the claim
 *                 window while `c` is set). Absent when the lock is free.
 *   {K}:q   ZSET  the wait queue: member = waiter token, score = arrival time in µs of server TIME
 *                 (FIFO order; a refresh keeps the score). Absent when nobody waits.
 *   {K}:w   HASH  waiter details: token -> "<deadline ms>|<ttl ms>|<wake channel>".
 *
 * `{K}:q` and `{K}:w` expire with their latest waiter deadline and are deleted as soon as the
 * queue empties, so nothing is left behind per lock key once it is free and nobody waits (lock
 * keys such as `order:<id>` are high-cardinality by design). Wrapping K in braces is injective
 * (`{K}` always ends in `}`, the others in `:q` / `:w`), so no two lock keys share a Redis key.
 *
 * Redis Cluster: the braces make K the hash tag, so the keys of one lock key share a slot. Redis
 * takes the tag up to the first `}`, so the keys of a multi-key lock must agree up to and
 * including their first `}` to land in one slot, which is what writing user keys such as
 * `{order:1}:items` and `{order:1}:payment` achieves under a common prefix. A final key starting
 * with `}` has an empty tag and is not Cluster-safe.
 */

/** The Redis keys one lock key uses. */
export interface RedisLockKeys {
  /** HASH of the current grant. */
  readonly lock: string;
  /** ZSET wait queue. */
  readonly queue: string;
  /** HASH of waiter details. */
  readonly waiters: string;
}

/** The Redis keys of lock key `key` (see the layout above). */
export function redisLockKeys(key: string): RedisLockKeys {
  const lock = `{${key}}`;
  return { lock, queue: `${lock}:q`, waiters: `${lock}:w` };
}

/** `KEYS` of the scripts that work on whole locks: lock, queue, waiters for each key, in order. */
export function scriptKeys(keys: readonly string[]): string[] {
  const out: string[] = [];
  for (const key of keys) {
    const k = redisLockKeys(key);
    out.push(k.lock, k.queue, k.waiters);
  }
  return out;
}
