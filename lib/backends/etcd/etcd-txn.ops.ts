import type { ICompare, IKeyValue, IRangeRequest, IRequestOp, ITxnResponse } from 'etcd3';
import type { EtcdLockRange } from './etcd.keys';

/** Reads the owner of a lock: the member with the lowest create revision in its range. */
export function ownerRange(range: EtcdLockRange): IRangeRequest {
  return {
    key: range.start,
    range_end: range.end,
    sort_order: 'Ascend',
    sort_target: 'Create',
    limit: 1,
  };
}

/** {@link ownerRange} as a transaction operation. */
export function ownerOp(range: EtcdLockRange): IRequestOp {
  return { request_range: ownerRange(range) };
}

/** Members ahead that one attempt reads and a waiter follows, per key. */
export const AHEAD_LIMIT = 16;

/**
 * Reads the members ahead of ours in a range, nearest first, at most {@link AHEAD_LIMIT}. With our
 * create revision known, exactly those; unknown (our member was just written, so it is the
 * newest), the newest `AHEAD_LIMIT + 1`, which start with ours unless our member already existed.
 * etcd sets `more` when it left members out.
 */
export function aheadOp(range: EtcdLockRange, revision: number | undefined): IRequestOp {
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

/** Reads one member key (its revisions and lease, not its value). */
export function memberReadOp(member: Buffer): IRequestOp {
  return { request_range: { key: member, keys_only: true } };
}

/** Writes one member key on a lease. */
export function putOp(member: Buffer, value: Buffer, lease: string): IRequestOp {
  return { request_put: { key: member, value, lease } };
}

/** Deletes one member key. */
export function deleteOp(member: Buffer): IRequestOp {
  return { request_delete_range: { key: member } };
}

/** True when no key exists in the range (`create_revision == 0` holds only for an empty range). */
export function emptyRangeCompare(range: EtcdLockRange): ICompare {
  return {
    key: range.start,
    range_end: range.end,
    target: 'Create',
    result: 'Equal',
    create_revision: 0,
  };
}

/** Every key-value read by operation `index` of a transaction. */
export function rangeKvs(response: ITxnResponse, index: number): IKeyValue[] {
  return response.responses[index]?.response_range?.kvs ?? [];
}

/** Whether operation `index` of a transaction left keys out (its `limit` was reached). */
export function rangeMore(response: ITxnResponse, index: number): boolean {
  return response.responses[index]?.response_range?.more === true;
}

/** The first key-value read by operation `index` of a transaction. */
export function firstKv(response: ITxnResponse, index: number): IKeyValue | undefined {
  return rangeKvs(response, index)[0];
}
