/**
 * Redis key layout. For a lock key K (final, already prefixed by the engine, such as
 * `lock:order:1`) the backend uses at most three Redis keys:
 *
 *   {K}     HASH  the grant: `o` owner token, `f` fencing token; `c` = the owner's queue score
 *                 while the lock was handed to a queued waiter that has not claimed it yet; `q` =
 *                 "1" when a waiter may be queued, so that release looks for one (set by every
 *                 script that leaves a queue entry behind a held lock; it may outlive the queue,
 *                 which only costs that release a look). PX = the holder's ttl (the claim window
 *                 while `c` is set). Absent when the lock is free.
 *   {K}:q   ZSET  the wait queue: member = waiter token, score = arrival time in µs of server TIME
 *                 (FIFO order; a refresh keeps the score). Absent when nobody waits.
 *   {K}:w   HASH  waiter details: token -> "<deadline ms>|<ttl ms>|<attempt>|<wake channel>"
 *                 (attempt: the waiter's attempt that wrote the entry, 0 when it cannot be offered
 *                 a handoff, see redis.scripts.ts).
 *
 * `{K}:q` and `{K}:w` expire with their latest waiter deadline and are deleted as soon as the
 * queue empties, so nothing is left behind per lock key once it is free and nobody waits (lock
 * keys such as `order:<id>` are high-cardinality by design). Wrapping K in braces is injective
 * (`{K}` always ends in `}`, the others in `:q` / `:w`), so no two lock keys share a Redis key.
 *
 * Redis Cluster: the braces make K the hash tag, so the three keys of one lock key share a slot,
 * and the single-lock scripts (acquire, release, cancel, inspect) touch one slot when all keys
 * of the lock agree up to and including their first `}` (Redis takes the tag up to the first
 * `}`: user keys such as `{order:1}:items` and `{order:1}:payment` under a common prefix). That
 * is a prerequisite for Cluster, not support for it: the extend script batches the keys of many
 * unrelated locks into one call (CROSSSLOT on Cluster), a final key starting with `}` has an
 * empty tag, and the backend accepts no Cluster client.
 */

/** The lock HASH of lock key `key` (see the layout above). */
export function lockHashKey(key: string): string {
  return `{${key}}`;
}

/**
 * The argument list of a script that works on whole locks: KEYS (lock, queue, waiters for each
 * key, in order; `keys.length * 3` of them) followed by `args` as ARGV, in one array.
 */
export function scriptArgv(
  keys: readonly string[],
  ...args: readonly (string | number)[]
): (string | number)[] {
  const out: (string | number)[] = [];
  for (const key of keys) {
    const lock = `{${key}}`;
    out.push(lock, `${lock}:q`, `${lock}:w`);
  }
  for (const arg of args) out.push(arg);
  return out;
}
