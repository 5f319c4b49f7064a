import type { Etcd3, IKeyValue, ITxnResponse } from 'etcd3';
import { LockBackendError } from '../../errors/lock-backend.error';
import type { BackendAcquireRequest, BackendAcquireResult } from '../lock-backend.interface';
import type { EtcdHeldRegistry } from './etcd-held.registry';
import {
  aheadOp,
  emptyRangeCompare,
  firstKv,
  memberReadOp,
  ownerOp,
  putOp,
  rangeKvs,
  rangeMore,
} from './etcd-txn.ops';
import type { EtcdAhead, EtcdWaiterRegistry } from './etcd-waiter.registry';
import type { EtcdCleaner } from './etcd.cleaner';
import { EtcdLockRange, decodeMember, encodeMember, lockRange, memberKey } from './etcd.keys';
import type { EtcdRpc } from './etcd.rpc';
import type { EtcdSession } from './etcd.session';

/** Smallest `retryAfter` hint, in ms. */
const MIN_RETRY_AFTER = 10;

/** Result of one attempt: an answer, or "the session died under it, try again". */
export type EtcdAttempt = BackendAcquireResult | 'session-lost';

/** What the acquire attempts share with their backend. */
export interface EtcdAttemptContext {
  readonly client: Etcd3;
  readonly rpc: EtcdRpc;
  readonly held: EtcdHeldRegistry;
  readonly waiters: EtcdWaiterRegistry;
  readonly cleaner: EtcdCleaner;
  /** Session TTL asked of etcd, whole seconds: the `retryAfter` bound for unknown owners. */
  readonly sessionTtlSeconds: number;
  /** Throws when the backend was closed while an attempt was on the wire. */
  assertOpen(operation: string): void;
}

/**
 * The acquire transactions of the backend: one per attempt, deciding from its own reads whether
 * the lock is granted or the token queues (and what it then follows). See the design comment of
 * etcd.backend.ts.
 */
export class EtcdAcquireAttempts {
  constructor(private readonly ctx: EtcdAttemptContext) {}

  /** A try: take every key if all are free, else read the owners; leaves no trace when busy. */
  async once(session: EtcdSession, request: BackendAcquireRequest): Promise<EtcdAttempt> {
    const { keys, token } = request;
    const ranges = keys.map(lockRange);
    const members = keys.map((key) => memberKey(key, session.leaseHex, token));
    const value = encodeMember({ ttl: request.ttl, session: session.ttl });
    const response = await this.ctx.rpc.run('acquire', (options) =>
      this.ctx.client.kv.txn(
        {
          compare: ranges.map(emptyRangeCompare),
          success: members.map((member) => putOp(member, value, session.leaseId)),
          failure: [...ranges.map(ownerOp), ...members.map(memberReadOp)],
        },
        options,
      ),
    );
    if (!session.alive) return 'session-lost';
    // The ranges were empty, so every member is new and was created at this revision.
    if (response.succeeded) return this.grantAt(session, request, members, response);
    const n = keys.length;
    const owners = ranges.map((_, i) => firstKv(response, i));
    const mine = members.map((_, i) => firstKv(response, n + i));
    // A retried request whose first try was applied after all: ours already.
    if (mine.every((kv) => kv) && owners.every((owner, i) => owner?.key.equals(members[i]))) {
      return this.grant(
        session,
        request,
        members,
        mine.map((kv) => Number(kv?.create_revision)),
      );
    }
    if (mine.some((kv) => kv) && !this.ctx.waiters.get(token))
      this.ctx.cleaner.add(token, members, session);
    return { acquired: false, retryAfter: this.retryAfter(ranges, owners) };
  }

  /** A queued attempt: take the keys, or keep (or take) a place in their queues. */
  async queued(session: EtcdSession, request: BackendAcquireRequest): Promise<EtcdAttempt> {
    const { keys, token } = request;
    const ranges = keys.map(lockRange);
    const n = keys.length;
    // A lock handed to this token that the caller did not take: this attempt claims it again.
    this.ctx.held.take(token);
    const waiter = this.ctx.waiters.get(token);
    if (
      waiter &&
      waiter.session === session &&
      waiter.ttl === request.ttl &&
      waiter.keys.length === n &&
      waiter.keys.every((key, i) => key === keys[i])
    ) {
      // Already queued: the entry's expiry is local, so there is nothing to write; a
      // linearizable read (no raft write) tells whether it is our turn and who is ahead.
      const known = waiter.revisions;
      const response = await this.ctx.rpc.run('acquire', (options) =>
        this.ctx.client.kv.txn(
          {
            success: [
              ...waiter.members.map(memberReadOp),
              ...ranges.map(ownerOp),
              ...ranges.map((range, i) => aheadOp(range, known[i])),
            ],
          },
          options,
        ),
      );
      if (!session.alive) return 'session-lost';
      const intact = known.every(
        (revision, i) => Number(firstKv(response, i)?.create_revision ?? 0) === revision,
      );
      if (intact) return this.settle(session, request, waiter.members, known, response, n, true);
      // The entry is gone from etcd (deleted by someone else): write it again below.
    }

    const members = keys.map((key) => memberKey(key, session.leaseHex, token));
    const value = encodeMember({ ttl: request.ttl, session: session.ttl });
    const puts = members.map((member) => putOp(member, value, session.leaseId));
    const response = await this.ctx.rpc.run('acquire', (options) =>
      this.ctx.client.kv.txn(
        {
          compare: ranges.map(emptyRangeCompare),
          success: puts,
          failure: [
            ...puts,
            ...members.map(memberReadOp),
            ...ranges.map(ownerOp),
            ...ranges.map((range) => aheadOp(range, undefined)),
          ],
        },
        options,
      ),
    );
    if (!session.alive) return 'session-lost';
    if (response.succeeded) return this.grantAt(session, request, members, response);
    const revisions = members.map((_, i) => Number(firstKv(response, n + i)?.create_revision ?? 0));
    if (revisions.some((revision) => !(revision > 0))) {
      throw new LockBackendError(
        'etcd',
        'acquire',
        'etcd did not return the member key it just wrote',
      );
    }
    return this.settle(session, request, members, revisions, response, 2 * n, false);
  }

  /**
   * Grants, or queues and follows what is ahead, from a queued attempt's reads: the owners at
   * operation `at` of `response`, the members ahead right after them (read below our `known`
   * create revision, or from the newest member down).
   */
  private settle(
    session: EtcdSession,
    request: BackendAcquireRequest,
    members: readonly Buffer[],
    revisions: readonly number[],
    response: ITxnResponse,
    at: number,
    known: boolean,
  ): EtcdAttempt {
    this.ctx.assertOpen('acquire');
    const n = members.length;
    const ranges = request.keys.map(lockRange);
    const owners = ranges.map((_, i) => firstKv(response, at + i));
    const blocked = owners.map((owner, i) => !owner?.key.equals(members[i]));
    if (!blocked.some(Boolean)) return this.grant(session, request, members, revisions);

    const waiter = this.ctx.waiters.enqueue(
      {
        token: request.token,
        keys: [...request.keys],
        members,
        session,
        ttl: request.ttl,
        revisions,
      },
      request.queueFor ?? 0,
    );
    const aheads: EtcdAhead[] = [];
    ranges.forEach((range, i) => {
      if (!blocked[i]) return;
      // Newest first. Without a known own revision the read starts from the newest member, so
      // what is ahead is only certain from our own member on (normally the first).
      const kvs = rangeKvs(response, at + n + i);
      const own = known ? -1 : kvs.findIndex((kv) => kv.key.equals(members[i]));
      const ahead = known || own >= 0 ? kvs.slice(own + 1) : [];
      aheads.push({
        range,
        own: members[i],
        members: ahead.map((kv) => kv.key),
        complete: !rangeMore(response, at + n + i),
      });
    });
    this.ctx.waiters.follow(waiter, aheads, Number(response.header.revision), request.attempt);
    return { acquired: false, retryAfter: this.retryAfter(ranges, owners) };
  }

  /** Grants members that a successful transaction created, all at its header revision. */
  private grantAt(
    session: EtcdSession,
    request: BackendAcquireRequest,
    members: readonly Buffer[],
    response: ITxnResponse,
  ): EtcdAttempt {
    const revision = Number(response.header.revision);
    return this.grant(
      session,
      request,
      members,
      members.map(() => revision),
    );
  }

  private grant(
    session: EtcdSession,
    request: BackendAcquireRequest,
    members: readonly Buffer[],
    revisions: readonly number[],
  ): EtcdAttempt {
    this.ctx.assertOpen('acquire');
    if (!session.alive) return 'session-lost';
    this.ctx.waiters.take(request.token);
    this.ctx.held.add({
      token: request.token,
      keys: [...request.keys],
      members,
      session,
      revisions,
      deadline: performance.now() + request.ttl,
    });
    return { acquired: true, fencingTokens: revisions };
  }

  /** Upper bound of when the current owners may be gone without a wake-up, in ms. */
  private retryAfter(
    ranges: readonly EtcdLockRange[],
    owners: readonly (IKeyValue | undefined)[],
  ): number {
    let after = MIN_RETRY_AFTER;
    owners.forEach((owner, i) => {
      if (!owner) return;
      const own = this.ctx.held.remaining(ranges[i], owner);
      const hint = decodeMember(owner.value);
      const bound =
        own ?? (hint ? Math.min(hint.ttl, hint.session) : this.ctx.sessionTtlSeconds * 1000);
      after = Math.max(after, Math.ceil(bound));
    });
    return after;
  }
}
