/**
 * Redis key layout for lock key K (final, already prefixed): `{K}` (the grant), `{K}:q` (the wait
 * queue) and `{K}:w` (waiter details); see docs/architecture.md. Wrapping K in braces is
 * injective (`{K}` always ends in `}`, the others in `:q` / `:w`) and makes K the Cluster hash
 * tag, so the keys of one lock share a slot. Queue keys exist only while someone waits: nothing
 * is kept per lock key once it is free.
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
