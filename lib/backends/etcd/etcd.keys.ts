import type { ICompare, IKeyValue, IRequestOp, ITxnResponse } from 'etcd3';

/**
 * etcd key layout. Lock `K` owns the range `K\0...`; each holder or waiter writes one member key
 * `K\0<lease id, 16 hex>-<token>` in it, on its session lease. The member with the lowest create
 * revision holds the lock. NUL, not `/`, separates: with `/`, the members of lock `a/b` would fall
 * in the range of lock `a` and block it. Lock keys therefore must not contain NUL.
 */
const SEP = '\u0000';
const SEP_NEXT = '\u0001';

/** etcd's default `--max-txn-ops`: the most operations one transaction may carry. */
export const MAX_TXN_OPS = 128;
/** Members ahead that one attempt reads, and a waiter follows, per key. */
export const AHEAD_LIMIT = 16;

/** The member range of one lock key. */
export interface EtcdRange {
  readonly start: Buffer;
  readonly end: Buffer;
}

export function lockRange(key: string): EtcdRange {
  return { start: Buffer.from(key + SEP, 'utf8'), end: Buffer.from(key + SEP_NEXT, 'utf8') };
}

export function memberKey(key: string, leaseHex: string, token: string): Buffer {
  return Buffer.from(`${key}${SEP}${leaseHex}-${token}`, 'utf8');
}

/** The token of a member key (after `K\0<16 hex>-`). */
export function memberToken(member: Buffer): string {
  const text = member.toString('utf8');
  return text.slice(text.indexOf(SEP) + 18);
}

/** Why `key` cannot be a lock key, or `undefined` when it can. */
export function invalidLockKey(key: string): string | undefined {
  if (typeof key !== 'string' || key.length === 0) return 'lock keys must be non-empty strings';
  if (key.includes(SEP)) return 'lock keys must not contain a NUL character';
  return undefined;
}

/**
 * A member's value: its holder's ttl and session ttl in ms, so that other processes can bound
 * their `retryAfter` (etcd itself only knows the lease).
 */
export interface EtcdMemberHint {
  readonly ttl: number;
  readonly session: number;
}

export function encodeHint(hint: EtcdMemberHint): Buffer {
  return Buffer.from(JSON.stringify(hint), 'utf8');
}

export function decodeHint(value: Buffer | undefined): EtcdMemberHint | undefined {
  if (!value || value.length === 0 || value.length > 256) return undefined;
  try {
    const { ttl, session } = JSON.parse(value.toString('utf8')) as Partial<EtcdMemberHint>;
    if (typeof ttl === 'number' && typeof session === 'number') return { ttl, session };
  } catch {
    // Not written by this backend.
  }
  return undefined;
}

/** Reads the owner of a lock: the member with the lowest create revision. */
export function ownerOp(range: EtcdRange): IRequestOp {
  return {
    request_range: {
      key: range.start,
      range_end: range.end,
      sort_order: 'Ascend',
      sort_target: 'Create',
      limit: 1,
    },
  };
}

/**
 * Reads the members ahead of ours, nearest first, at most {@link AHEAD_LIMIT}: below our create
 * revision when known; else the newest `AHEAD_LIMIT + 1`, which start with ours when this
 * transaction created it. etcd sets `more` when it left members out.
 */
export function aheadOp(range: EtcdRange, revision: number | undefined): IRequestOp {
  return {
    request_range: {
      key: range.start,
      range_end: range.end,
      sort_order: 'Descend',
      sort_target: 'Create',
      keys_only: true,
      ...(revision === undefined
        ? { limit: AHEAD_LIMIT + 1 }
        : { limit: AHEAD_LIMIT, max_create_revision: revision - 1 }),
    },
  };
}

export const readOp = (key: Buffer): IRequestOp => ({ request_range: { key, keys_only: true } });
export const deleteOp = (key: Buffer): IRequestOp => ({ request_delete_range: { key } });
export const putOp = (key: Buffer, value: Buffer, lease: string): IRequestOp => ({
  request_put: { key, value, lease },
});

/** True when the range is empty (`create_revision == 0` holds only for a missing key). */
export function emptyCompare(range: EtcdRange): ICompare {
  return {
    key: range.start,
    range_end: range.end,
    target: 'Create',
    result: 'Equal',
    create_revision: 0,
  };
}

/** Every key-value read by operation `index` of a transaction. */
export const kvsAt = (response: ITxnResponse, index: number): IKeyValue[] =>
  response.responses[index]?.response_range?.kvs ?? [];

/** Whether operation `index` left keys out (its `limit` was reached). */
export const moreAt = (response: ITxnResponse, index: number): boolean =>
  response.responses[index]?.response_range?.more === true;
