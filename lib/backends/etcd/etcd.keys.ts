/**
 * etcd key layout. A lock key `K` owns the range `K + SEP ...`; each holder or waiter writes one
 * member key `K + SEP + <lease id, 16 hex> + '-' + <token>` in it. The separator is a NUL byte,
 * not `/`: with `/`, the members of a lock named `a/b` would fall inside the range of a lock named
 * `a` and block it. Lock keys must therefore not contain NUL.
 */
const SEP = '\u0000';
const SEP_NEXT = '\u0001';
const LEASE_HEX_LENGTH = 16;

/** The member range of one lock key. */
export interface EtcdLockRange {
  /** The lock key as the engine gave it. */
  readonly key: string;
  /** First key of the range: `key + SEP`. */
  readonly start: Buffer;
  /** First key after the range. */
  readonly end: Buffer;
}

/** Range of the members of lock `key`. */
export function lockRange(key: string): EtcdLockRange {
  return { key, start: Buffer.from(key + SEP, 'utf8'), end: Buffer.from(key + SEP_NEXT, 'utf8') };
}

/** Member key of `token` in the range of `key`, for the session lease `leaseHex`. */
export function memberKey(key: string, leaseHex: string, token: string): Buffer {
  return Buffer.from(`${key}${SEP}${leaseHex}-${token}`, 'utf8');
}

/** The token of a member key of `range`, or `undefined` when the key is not a member key. */
export function memberToken(range: EtcdLockRange, member: Buffer): string | undefined {
  if (
    member.length < range.start.length + LEASE_HEX_LENGTH + 1 ||
    !member.subarray(0, range.start.length).equals(range.start)
  ) {
    return undefined;
  }
  return member.subarray(range.start.length + LEASE_HEX_LENGTH + 1).toString('utf8');
}

/** Why `key` cannot be used as a lock key, or `undefined` when it can. */
export function invalidLockKey(key: string): string | undefined {
  if (typeof key !== 'string' || key.length === 0) return 'lock keys must be non-empty strings';
  if (key.includes(SEP)) return 'lock keys must not contain a NUL character';
  return undefined;
}

/** Value stored in a member key: hints for other processes' `retryAfter`, both in ms. */
export interface EtcdMemberValue {
  /** The per-lock ttl the member asked for. */
  readonly ttl: number;
  /** TTL of the member's session lease. */
  readonly session: number;
}

/** Encodes a member value. */
export function encodeMember(value: EtcdMemberValue): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

/** Decodes a member value, `undefined` when it is not one. */
export function decodeMember(value: Buffer | undefined): EtcdMemberValue | undefined {
  if (!value || value.length === 0 || value.length > 256) return undefined;
  try {
    const parsed = JSON.parse(value.toString('utf8')) as Partial<EtcdMemberValue>;
    if (typeof parsed.ttl === 'number' && typeof parsed.session === 'number') {
      return { ttl: parsed.ttl, session: parsed.session };
    }
  } catch {
    // Not written by this backend.
  }
  return undefined;
}
