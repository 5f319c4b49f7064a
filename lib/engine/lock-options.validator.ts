import { describeValue } from './lock-key.validator';

/**
 * Longest time, in ms, the library accepts anywhere (ttl, wait, timeouts): 2^31 − 1, about 24.8
 * days. Node clamps longer `setTimeout` delays to 1 ms, which would expire a lock at once, spin a
 * renewal timer or make a waiter poll; one bound for every time keeps every timer exact.
 */
export const MAX_DURATION = 2_147_483_647;

/**
 * Checks a duration in ms and returns it rounded up to whole ms (a lock is never shorter than
 * asked). `min` is 0 for waits and 1 for everything that must elapse.
 *
 * @throws TypeError unless `value` is a number in [min, {@link MAX_DURATION}] (before rounding,
 *   values in (0, 1) count as 1)
 */
export function toDuration(value: unknown, where: string, min: 0 | 1): number {
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    (min === 1 ? value <= 0 : value < 0) ||
    value > MAX_DURATION
  ) {
    throw new TypeError(
      `${where} must be a number of milliseconds ${min === 1 ? '> 0' : '>= 0'} and <= ${MAX_DURATION}, got ${describeValue(value)}`,
    );
  }
  return Math.ceil(value);
}

/** Checks a ttl-like duration (> 0 ms); see {@link toDuration}. */
export function toTtl(value: unknown, where: string): number {
  return toDuration(value, where, 1);
}

/** `fallback` when `value` is undefined, else `value` checked as a ttl-like duration. */
export function optionalTtl(value: unknown, where: string, fallback: number): number {
  return value === undefined ? fallback : toTtl(value, where);
}

/** Checks a wait-like duration (>= 0 ms); see {@link toDuration}. */
export function toWait(value: unknown, where: string): number {
  return toDuration(value, where, 0);
}

/** Longest `name` of a lock, in characters: names label metrics, where short is the point. */
export const MAX_NAME_LENGTH = 200;

/**
 * Checks a lock's `name` (a bounded label for events, metrics and spans).
 *
 * @throws TypeError unless `value` is a non-empty string of at most {@link MAX_NAME_LENGTH} characters
 */
export function toName(value: unknown, where: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_NAME_LENGTH) {
    throw new TypeError(
      `${where} must be a non-empty string of at most ${MAX_NAME_LENGTH} characters, got ${describeValue(value)}`,
    );
  }
  return value;
}

/** @throws TypeError unless `value` is `undefined` or a boolean */
export function assertOptionalBoolean(value: unknown, where: string): void {
  if (value !== undefined && typeof value !== 'boolean') {
    throw new TypeError(`${where} must be true or false, got ${describeValue(value)}`);
  }
}

/**
 * Rejects option names that are not in `known`, suggesting the closest known one, so a typo such
 * as `tll` fails loudly instead of being ignored. With `nearMissesOnly`, for another library's
 * options whose set grows with its versions, only a name close to a known one is rejected.
 *
 * @throws TypeError naming the unknown option, when `options` is not an object or has one
 */
export function assertKnownOptions(
  options: unknown,
  known: readonly string[],
  where: string,
  nearMissesOnly = false,
): void {
  if (options === undefined) return;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`${where} must be an object, got ${describeValue(options)}`);
  }
  // for...in allocates nothing: this runs on every acquire.
  for (const name in options) {
    if (!Object.prototype.hasOwnProperty.call(options, name) || known.includes(name)) continue;
    const hint = closest(name, known);
    if (nearMissesOnly && hint === undefined) continue;
    throw new TypeError(
      `${where}: unknown option "${name}"${hint ? `; did you mean "${hint}"?` : ''} (known: ${known.join(', ')})`,
    );
  }
}

/** The known name at edit distance <= 2 from `name` (case-insensitive), if one is that close. */
function closest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** Levenshtein distance with adjacent transpositions; option names are short. */
function editDistance(a: string, b: string): number {
  if (a.length > 64 || b.length > 64) return Infinity;
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    rows.push(new Array<number>(b.length + 1).fill(0));
    rows[i][0] = i;
  }
  for (let j = 0; j <= b.length; j++) rows[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d = Math.min(d, rows[i - 2][j - 2] + 1);
      }
      rows[i][j] = d;
    }
  }
  return rows[a.length][b.length];
}
