import type { IKeyValue, ITxnRequest, ITxnResponse } from 'etcd3';
import type { EtcdAhead } from './etcd-queue.follower';
import {
  aheadOp,
  emptyCompare,
  EtcdRange,
  kvsAt,
  moreAt,
  ownerOp,
  putOp,
  readOp,
} from './etcd.keys';

/** One acquire attempt: the members of one token on one session. */
export interface EtcdAttempt {
  readonly ranges: readonly EtcdRange[];
  readonly members: readonly Buffer[];
  /** Stay queued when busy (`queueFor > 0`), else leave no trace. */
  readonly queue: boolean;
  /** The members' create revisions, when this token is already queued. */
  readonly known?: readonly number[];
  readonly value: Buffer;
  readonly leaseId: string;
}

/** What the answer to an attempt says. */
export type EtcdAttemptAnswer =
  | { readonly granted: true; readonly revisions: readonly number[] }
  | {
      readonly granted: false;
      readonly owners: readonly (IKeyValue | undefined)[];
      /** Our members' create revisions (queued attempts). */
      readonly revisions: readonly number[];
      /** What is ahead in each blocked key (queued attempts). */
      readonly aheads: readonly EtcdAhead[];
      /** The revision the reads were made at. */
      readonly revision: number;
    };

/**
 * The one transaction of an attempt. "If every range is empty, put my members" grants a free
 * lock. Otherwise it reads our members and the owners (lowest create revision); a queued attempt
 * also puts its members, queued behind the others (FIFO by create revision; a put on an existing
 * member keeps its place), and reads up to `AHEAD_LIMIT` members ahead. All members of a
 * multi-key lock are written in one transaction and share a create revision, so waiters order the
 * same way on every key and cannot deadlock. Idempotent: a retried request whose first try was
 * applied finds its members lowest and is granted.
 */
export function attemptRequest(attempt: EtcdAttempt): ITxnRequest {
  const { ranges, members, known, queue } = attempt;
  const puts = members.map((member) => putOp(member, attempt.value, attempt.leaseId));
  const reads = [...members.map(readOp), ...ranges.map(ownerOp)];
  const aheads = ranges.map((range, i) => aheadOp(range, known?.[i]));
  return {
    compare: ranges.map(emptyCompare),
    success: puts,
    failure: queue ? [...puts, ...reads, ...aheads] : reads,
  };
}

/** Reads the answer to {@link attemptRequest}. */
export function readAttempt(attempt: EtcdAttempt, response: ITxnResponse): EtcdAttemptAnswer {
  const { ranges, members, known, queue } = attempt;
  const revision = Number(response.header.revision);
  // The ranges were empty: every member was created by this transaction.
  if (response.succeeded) return { granted: true, revisions: members.map(() => revision) };
  const n = members.length;
  const at = queue ? n : 0;
  const revisions = members.map((_, i) => Number(kvsAt(response, at + i)[0]?.create_revision ?? 0));
  const owners = ranges.map((_, i) => kvsAt(response, at + n + i)[0]);
  const blocked = owners.map((owner, i) => !owner?.key.equals(members[i]));
  if (!blocked.includes(true)) return { granted: true, revisions };
  const aheads: EtcdAhead[] = [];
  for (let i = 0; queue && i < n; i++) {
    if (!blocked[i]) continue;
    // Newest first: below our known revision, or else from the newest member, which is ours when
    // this transaction created it. Anything else (our member was deleted and created anew) leaves
    // what is ahead unknown.
    const kvs = kvsAt(response, at + 2 * n + i);
    const own = known ? -1 : kvs.findIndex((kv) => kv.key.equals(members[i]));
    const sure = known ? known[i] === revisions[i] : own >= 0;
    const ahead = sure ? kvs.slice(own + 1).map((kv) => kv.key) : [];
    const complete = !moreAt(response, at + 2 * n + i);
    aheads.push({ range: ranges[i], own: members[i], members: ahead, complete });
  }
  return { granted: false, owners, revisions, aheads, revision };
}
