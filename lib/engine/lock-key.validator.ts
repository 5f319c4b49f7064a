/** Longest user key we accept, in UTF-16 code units. Long enough for any id, short enough to keep backend keys cheap. */
export const MAX_KEY_LENGTH = 512;

/** What callers may pass as the key(s) of a lock. */
export type LockKeys = string | readonly string[];

/**
 * Validates one user key. Throws a `TypeError` naming the problem; never touches the backend.
 */
export function assertValidKey(key: unknown, where = 'lock key'): asserts key is string {
  if (typeof key !== 'string') {
    throw new TypeError(`${where} must be a string, got ${describeValue(key)}`);
  }
  if (key.length === 0) {
    throw new TypeError(`${where} must not be empty`);
  }
  if (key.length > MAX_KEY_LENGTH) {
    throw new TypeError(
      `${where} is ${key.length} characters long; the limit is ${MAX_KEY_LENGTH}`,
    );
  }
  // Control characters make keys invisible in logs and ambiguous across backends' tooling.
  if (hasControlCharacter(key)) {
    throw new TypeError(`${where} ${JSON.stringify(key)} contains a control character`);
  }
  // UTF-8 (Redis, etcd) turns every lone surrogate into U+FFFD, so two such keys would collide.
  if (hasLoneSurrogate(key)) {
    throw new TypeError(
      `${where} ${JSON.stringify(key)} contains a lone UTF-16 surrogate (not valid Unicode)`,
    );
  }
}

/** Whether `text` has a UTF-16 surrogate that is not part of a pair. */
export function hasLoneSurrogate(text: string): boolean {
  return LONE_SURROGATE.test(text);
}

// With the `u` flag a surrogate class only matches surrogates outside a valid pair.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/**
 * Validates `keys` and returns them de-duplicated in canonical (code unit) order, the order in
 * which every backend takes them, so that two callers locking [a, b] and [b, a] cannot deadlock.
 */
export function normalizeKeys(keys: unknown): string[] {
  // The common single key: no Set, spread or sort on every acquisition.
  if (!Array.isArray(keys)) {
    assertValidKey(keys, 'lock key');
    return [keys];
  }
  const list: unknown[] = keys;
  if (list.length === 0) {
    throw new TypeError('a multi-key lock needs at least one key');
  }
  // Indexed, not forEach: a hole in a sparse array must be refused, not skipped.
  for (let i = 0; i < list.length; i++) assertValidKey(list[i], `lock key #${i}`);
  return [...new Set(list as string[])].sort(compareCodeUnits);
}

function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A short, safe description of a value for error messages. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string')
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    return String(value);
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

/** Whether `text` contains an ASCII control character. */
export function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}
