/*
 * etcd backend, designed after etcd's Go `concurrency` package.
 *
 * Session. One lease per backend, granted lazily on the first acquire, kept alive in the
 * background (every TTL/3) and shared by every lock and queue entry of the backend. It protects
 * against the process dying: when keep-alives stop, etcd deletes every key on the lease within
 * `sessionTtl`. When the session is lost (etcd answers that the lease is gone, or no keep-alive
 * was answered before a local deadline that always falls before etcd's), every lock on it is
 * reported lost at once: `extend` returns false for them, `onLost` listeners hear about them, its
 * waiters are woken to queue again, and the next acquire opens a new session.
 *
 * Per-lock ttl. A shared lease cannot expire one lock, and the process may live on while it stops
 * renewing a lock (renewal disabled, a stuck event loop that later recovers). So the backend keeps
 * a local deadline per held lock (`ttl` from the acquire, moved by every successful `extend`) and
 * deletes the lock's keys itself when it passes; from then on `extend` is false. A lock thus ends
 * at whichever comes first: its own ttl (process alive) or the session lease (process dead).
 * Member keys store the holder's ttl and session TTL so that other processes can bound their
 * `retryAfter` by them.
 *
 * Keys. Lock `K` owns the range `K\0...`; every holder or waiter writes its own member key
 * `K\0<lease hex>-<token>` on the session lease. The member with the lowest create revision in
 * the range holds the lock; its create revision is the fencing token (strictly increasing: a
 * later holder's key was created after the previous holder's). Two acquisitions from one process
 * write two members, so at most one of them is the lowest.
 *
 * Acquire. Without queueing it is one transaction: "if no key exists in any range, put my
 * members, else read the owners" (a range compare `create_revision == 0` is true only for an empty
 * range), so a busy try leaves no trace. With `queueFor` it is one transaction too: put (or
 * refresh) my members, read them, the owners and the keys just ahead. A busy waiter's members
 * stay, ordered by create revision (FIFO), and it watches only the member just ahead of it in
 * each range (no herd); that member's deletion fires `onWake` for the token, and the engine's next
 * attempt with the same token finds it lowest. A multi-key lock writes all members in one
 * transaction, so they share one create revision and every range orders its waiters the same
 * way: the oldest waiter is lowest everywhere, hence no deadlock. A queue entry not refreshed by
 * an attempt within `queueFor` is deleted.
 *
 * Failures. Every call has a budget (`commandTimeout`) covering the client's own retries and
 * fail-over, and fails with `LockBackendError`. All writes are idempotent (same member key, same
 * lease; compares evaluated when applied), so retries are safe. Keys that a failed (ambiguous)
 * acquire may still write later are deleted in the background once no attempt of the token is
 * running, and again after a grace period that outlasts any delayed apply in etcd.
 */
import type { Etcd3, IKeyValue, IRangeRequest, IRequestOp, ITxnResponse, Watcher } from 'etcd3';
import { LockBackendError } from '../../errors/lock-backend.error';
import type {
  BackendAcquireRequest,
  BackendAcquireResult,
  BackendExtendRequest,
  BackendLockInfo,
  BackendLockRef,
  LockBackend,
  Unsubscribe,
} from '../lock-backend.interface';
import { EtcdLockBackendOptions, resolveEtcdOptions } from './etcd-backend.options';
import { loadEtcd3, tryLoadEtcd3 } from './etcd-client.loader';
import { EtcdCleaner, MAX_TXN_OPS } from './etcd.cleaner';
import { DeadlineQueue } from './etcd-deadline.queue';
import {
  EtcdLockRange,
  decodeMember,
  encodeMember,
  invalidLockKey,
  lockRange,
  memberKey,
  memberToken,
} from './etcd.keys';
import { EtcdRpc, isLeaseNotFound, sleep } from './etcd.rpc';
import { EtcdSession, EtcdSessionLoss } from './etcd.session';

/** Keys per multi-key lock: a queued attempt sends 4 operations per key in one transaction. */
const MAX_KEYS = Math.floor(MAX_TXN_OPS / 4);
/** Smallest `retryAfter` hint, in ms. */
const MIN_RETRY_AFTER = 10;
/** How long etcd may still apply a request after reporting it failed, in ms (beyond the budget). */
const DELAYED_APPLY_GRACE = 10_000;
/** Parallel transactions of one `extend` batch. */
const EXTEND_CONCURRENCY = 8;

/** What {@link EtcdLockBackend.onLost} listeners receive. */
export interface EtcdLocksLostEvent {
  /** Every lock of the lost session, as acquired. */
  readonly locks: readonly BackendLockRef[];
  /** Why the session ended. */
  readonly reason: string;
  /** The underlying error, when there was one. */
  readonly cause?: unknown;
}

interface Held {
  readonly token: string;
  readonly keys: readonly string[];
  readonly members: readonly Buffer[];
  readonly session: EtcdSession;
  readonly revisions: readonly number[];
  /** Local deadline, monotonic ms. */
  deadline: number;
}

interface Waiter {
  readonly token: string;
  readonly keys: readonly string[];
  readonly members: readonly Buffer[];
  readonly session: EtcdSession;
  revisions: readonly number[];
  /** Watches on the member just ahead, by member key (latin1). */
  readonly watches: Map<string, Watcher>;
}

interface Guard {
  readonly members: readonly Buffer[];
  readonly session: EtcdSession;
}

/** Result of one attempt: an answer, or "the session died under it, try again". */
type Attempt = BackendAcquireResult | 'session-lost';

function ownerRange(range: EtcdLockRange): IRangeRequest {
  return {
    key: range.start,
    range_end: range.end,
    sort_order: 'Ascend',
    sort_target: 'Create',
    limit: 1,
  };
}

function ownerOp(range: EtcdLockRange): IRequestOp {
  return { request_range: ownerRange(range) };
}

function aheadOp(range: EtcdLockRange, revision: number | undefined): IRequestOp {
  // Unknown own revision: the member was just created, so it is the newest; the one after it is
  // the one just ahead.
  return {
    request_range: {
      key: range.start,
      range_end: range.end,
      sort_order: 'Descend',
      sort_target: 'Create',
      keys_only: true,
      ...(revision === undefined ? { limit: 2 } : { limit: 1, max_create_revision: revision - 1 }),
    },
  };
}

function firstKv(response: ITxnResponse, index: number): IKeyValue | undefined {
  return response.responses[index]?.response_range?.kvs?.[0];
}

/**
 * A {@link LockBackend} on etcd v3: one shared session lease, FIFO queues of member keys ordered
 * by create revision, fencing tokens from create revisions. See the comment at the top of this
 * file for the design.
 *
 * ```ts
 * const backend = new EtcdLockBackend({ hosts: 'http://127.0.0.1:2379' });
 * ```
 */
export class EtcdLockBackend implements LockBackend {
  /** Backend name used in logs and errors. */
  readonly name = 'etcd';

  private readonly client: Etcd3;
  private readonly ownsClient: boolean;
  private readonly rpc: EtcdRpc;
  private readonly sessionTtlSeconds: number;
  private readonly cleaner: EtcdCleaner;

  private session?: EtcdSession;
  private opening?: Promise<EtcdSession>;
  private closed = false;
  private closing?: Promise<void>;

  private readonly held = new Map<string, Held>();
  private readonly waiters = new Map<string, Waiter>();
  private readonly guards = new Map<string, Guard>();
  private readonly running = new Map<string, number>();
  private readonly heldDeadlines = new DeadlineQueue((token) => this.expireHeld(token));
  private readonly queueDeadlines = new DeadlineQueue((token) => this.expireWaiter(token));
  private readonly guardDeadlines = new DeadlineQueue((token) => this.fireGuard(token));
  private readonly wakeListeners = new Map<string, Set<() => void>>();
  private readonly lostListeners = new Set<(event: EtcdLocksLostEvent) => void>();
  /** Watch cancellations on the wire: closing the client under them makes etcd3 retry forever. */
  private readonly cancelling = new Set<Promise<void>>();

  /**
   * @param options `{ hosts, ...etcd3 options }` to let the backend create (and close) its client,
   *   or `{ client }` to use one the application owns; plus `sessionTtl` (default 10000 ms) and
   *   `commandTimeout` (default 2000 ms)
   * @throws TypeError or RangeError for invalid options
   * @throws Error when the optional `etcd3` package is not installed (`npm i etcd3`)
   */
  constructor(options: EtcdLockBackendOptions) {
    const resolved = resolveEtcdOptions(options);
    this.sessionTtlSeconds = resolved.sessionTtlSeconds;
    if (resolved.client) {
      this.client = resolved.client;
      this.ownsClient = false;
      this.rpc = new EtcdRpc(tryLoadEtcd3(), resolved.commandTimeout);
    } else {
      const etcd3 = loadEtcd3();
      const clientOptions = resolved.clientOptions ?? { hosts: [] };
      this.client = new etcd3.Etcd3({
        ...clientOptions,
        faultHandling: { watchBackoff: cappedBackoff(0), ...clientOptions.faultHandling },
      });
      this.ownsClient = true;
      this.rpc = new EtcdRpc(etcd3, resolved.commandTimeout);
    }
    this.cleaner = new EtcdCleaner(this.client, this.rpc);
  }

  /** {@inheritDoc LockBackend.acquire} */
  async acquire(request: BackendAcquireRequest): Promise<BackendAcquireResult> {
    this.assertOpen('acquire');
    this.validateKeys('acquire', request.keys);
    if (!(request.ttl > 0) || !Number.isFinite(request.ttl)) {
      throw new LockBackendError(
        'etcd',
        'acquire',
        `ttl must be a finite number of ms > 0, got ${request.ttl}`,
      );
    }
    const token = request.token;
    this.enter(token);
    let session: EtcdSession | undefined;
    try {
      await this.cleaner.settle(token);
      for (let attempt = 0; attempt < 2; attempt++) {
        session = await this.ensureSession('acquire');
        let result: Attempt;
        try {
          result =
            request.queueFor !== undefined && request.queueFor > 0
              ? await this.attemptQueued(session, request)
              : await this.attemptOnce(session, request);
        } catch (err) {
          if (!isLeaseNotFound(err)) throw err;
          session.lose({ reason: 'etcd no longer knows the session lease', cause: err });
          result = 'session-lost';
        }
        if (result !== 'session-lost') return result;
      }
      throw new LockBackendError(
        'etcd',
        'acquire',
        'the session lease was lost twice during the attempt',
      );
    } catch (err) {
      if (session?.alive) this.guard(token, request.keys, session);
      throw err instanceof LockBackendError
        ? err
        : new LockBackendError(
            'etcd',
            'acquire',
            err instanceof Error ? err.message : String(err),
            { cause: err },
          );
    } finally {
      this.exit(token);
    }
  }

  /** {@inheritDoc LockBackend.extend} */
  async extend(requests: readonly BackendExtendRequest[]): Promise<boolean[]> {
    this.assertOpen('extend');
    const results = requests.map(() => false);
    const now = performance.now();
    const checks: { index: number; entry: Held; ttl: number }[] = [];
    requests.forEach((request, index) => {
      const entry = this.held.get(request.token);
      if (!entry || !entry.session.alive || !(request.ttl > 0) || !Number.isFinite(request.ttl)) {
        return;
      }
      if (entry.deadline <= now) {
        this.expireHeld(request.token);
        return;
      }
      checks.push({ index, entry, ttl: request.ttl });
    });
    if (checks.length === 0) return results;

    const chunks: (typeof checks)[] = [];
    let current: typeof checks = [];
    let ops = 0;
    for (const check of checks) {
      if (ops + check.entry.members.length > MAX_TXN_OPS && current.length > 0) {
        chunks.push(current);
        current = [];
        ops = 0;
      }
      current.push(check);
      ops += check.entry.members.length;
    }
    chunks.push(current);

    const answers = new Map<Held, boolean>();
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let chunk = chunks[next++]; chunk; chunk = chunks[next++]) {
        const reads: IRequestOp[] = chunk.flatMap(({ entry }) =>
          entry.members.map((member) => ({ request_range: { key: member, keys_only: true } })),
        );
        const response = await this.rpc.run('extend', (options) =>
          this.client.kv.txn({ success: reads }, options),
        );
        let at = 0;
        for (const { entry } of chunk) {
          let ok = true;
          entry.members.forEach((_, i) => {
            const kv = firstKv(response, at + i);
            if (
              !kv ||
              kv.lease !== entry.session.leaseId ||
              Number(kv.create_revision) !== entry.revisions[i]
            )
              ok = false;
          });
          at += entry.members.length;
          answers.set(entry, ok);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(EXTEND_CONCURRENCY, chunks.length) }, worker));

    const applied = performance.now();
    const probed = new Set<EtcdSession>();
    for (const { index, entry, ttl } of checks) {
      // The entry must still be the live grant: an expiry or release that started meanwhile wins.
      if (this.held.get(entry.token) !== entry || !entry.session.alive) continue;
      if (answers.get(entry)) {
        entry.deadline = applied + ttl;
        this.heldDeadlines.schedule(entry.token, entry.deadline);
        results[index] = true;
      } else {
        // Gone from etcd (deleted by someone else): forget it and remove any member left over.
        this.held.delete(entry.token);
        this.heldDeadlines.cancel(entry.token);
        this.cleaner.add(entry.token, entry.members, entry.session);
        probed.add(entry.session);
      }
    }
    for (const session of probed) session.probe();
    return results;
  }

  /** {@inheritDoc LockBackend.release} */
  async release(ref: BackendLockRef): Promise<boolean> {
    this.assertOpen('release');
    const entry = this.held.get(ref.token);
    if (!entry) return false;
    this.held.delete(ref.token);
    this.heldDeadlines.cancel(ref.token);
    if (!entry.session.alive) return false;
    const expired = entry.deadline <= performance.now();
    try {
      const response = await this.rpc.run('release', (options) =>
        this.client.kv.txn(
          { success: entry.members.map((key) => ({ request_delete_range: { key } })) },
          options,
        ),
      );
      const deleted = response.responses.reduce(
        (sum, r) => sum + Number(r.response_delete_range?.deleted ?? 0),
        0,
      );
      return !expired && deleted === entry.members.length;
    } catch (err) {
      this.cleaner.add(ref.token, entry.members, entry.session);
      throw err;
    }
  }

  /** {@inheritDoc LockBackend.cancel} */
  async cancel(ref: BackendLockRef): Promise<void> {
    if (this.closed) return;
    const waiter = this.dropWaiter(ref.token);
    const guard = this.guards.get(ref.token);
    if (guard && !this.held.has(ref.token) && guard.session !== waiter?.session) {
      this.cleaner.add(ref.token, guard.members, guard.session);
    }
    if (!waiter || !waiter.session.alive) return;
    try {
      await this.rpc.run('cancel', (options) =>
        this.client.kv.txn(
          { success: waiter.members.map((key) => ({ request_delete_range: { key } })) },
          options,
        ),
      );
    } catch (err) {
      this.cleaner.add(ref.token, waiter.members, waiter.session);
      throw err;
    }
  }

  /** {@inheritDoc LockBackend.inspect} */
  async inspect(key: string): Promise<BackendLockInfo> {
    this.assertOpen('inspect');
    this.validateKeys('inspect', [key]);
    const range = lockRange(key);
    const response = await this.rpc.run('inspect', (options) =>
      this.client.kv.range(ownerRange(range), options),
    );
    const owner = response.kvs[0];
    if (!owner) return { held: false };
    const fencingToken = Number(owner.create_revision);
    const own = this.ownRemaining(range, owner);
    if (own !== undefined) return { held: true, ttl: own, fencingToken };
    let ttl = decodeMember(owner.value)?.ttl;
    if (owner.lease !== '0') {
      const lease = await this.rpc.run('inspect', (options) =>
        this.client.leaseClient.leaseTimeToLive({ ID: owner.lease }, options),
      );
      const leaseMs = Number(lease.TTL) * 1000;
      if (leaseMs >= 0) ttl = ttl === undefined ? leaseMs : Math.min(ttl, leaseMs);
    }
    return ttl === undefined ? { held: true, fencingToken } : { held: true, ttl, fencingToken };
  }

  /** {@inheritDoc LockBackend.onWake} */
  onWake(token: string, listener: () => void): Unsubscribe {
    let listeners = this.wakeListeners.get(token);
    if (!listeners) {
      listeners = new Set();
      this.wakeListeners.set(token, listeners);
    }
    listeners.add(listener);
    return () => {
      const current = this.wakeListeners.get(token);
      if (!current) return;
      current.delete(listener);
      if (current.size === 0) this.wakeListeners.delete(token);
    };
  }

  /**
   * Calls `listener` once per session loss with every lock that was held on that session, as soon
   * as the loss is known (etcd says the lease is gone, or keep-alives went unanswered until the
   * local lease deadline), which is before etcd can hand those locks to anyone else. Without it,
   * the loss shows up at the next `extend` of each lock (which returns false).
   *
   * @returns a function that removes the listener
   */
  onLost(listener: (event: EtcdLocksLostEvent) => void): Unsubscribe {
    this.lostListeners.add(listener);
    return () => {
      this.lostListeners.delete(listener);
    };
  }

  /**
   * Revokes the session lease (which releases every lock and queue entry of this backend at
   * once), stops every timer and watch, and closes the etcd client if the backend created it. A
   * client passed as `client` is left open. Never rejects; idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    this.heldDeadlines.clear();
    this.queueDeadlines.clear();
    this.guardDeadlines.clear();
    this.cleaner.close();
    for (const token of [...this.waiters.keys()]) this.dropWaiter(token);
    this.held.clear();
    this.guards.clear();
    this.wakeListeners.clear();
    this.lostListeners.clear();
    const sessions: EtcdSession[] = [];
    if (this.session) sessions.push(this.session);
    this.session = undefined;
    if (this.opening) {
      try {
        sessions.push(await this.opening);
      } catch {
        // No lease was granted.
      }
    }
    await Promise.all([
      ...sessions.map((session) => session.revoke()),
      Promise.race([Promise.all(this.cancelling), sleep(this.rpc.timeout)]),
    ]);
    if (this.ownsClient) this.client.close();
  }

  private async attemptOnce(
    session: EtcdSession,
    request: BackendAcquireRequest,
  ): Promise<Attempt> {
    const { keys, token } = request;
    const ranges = keys.map(lockRange);
    const members = keys.map((key) => memberKey(key, session.leaseHex, token));
    const value = encodeMember({ ttl: request.ttl, session: session.ttl });
    const response = await this.rpc.run('acquire', (options) =>
      this.client.kv.txn(
        {
          compare: ranges.map((range) => ({
            key: range.start,
            range_end: range.end,
            target: 'Create',
            result: 'Equal',
            create_revision: 0,
          })),
          success: members.map((key) => ({ request_put: { key, value, lease: session.leaseId } })),
          failure: [
            ...ranges.map(ownerOp),
            ...members.map((key): IRequestOp => ({ request_range: { key, keys_only: true } })),
          ],
        },
        options,
      ),
    );
    if (!session.alive) return 'session-lost';
    if (response.succeeded) {
      // The ranges were empty, so every member is new and was created at this revision.
      const revision = Number(response.header.revision);
      return this.grant(
        session,
        request,
        members,
        members.map(() => revision),
      );
    }
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
    if (mine.some((kv) => kv) && !this.waiters.has(token))
      this.cleaner.add(token, members, session);
    return { acquired: false, retryAfter: this.retryAfter(ranges, owners) };
  }

  private async attemptQueued(
    session: EtcdSession,
    request: BackendAcquireRequest,
  ): Promise<Attempt> {
    const { keys, token } = request;
    let waiter = this.waiters.get(token);
    if (waiter && waiter.session !== session) {
      this.dropWaiter(token);
      waiter = undefined;
    }
    const ranges = keys.map(lockRange);
    const members = waiter?.members ?? keys.map((key) => memberKey(key, session.leaseHex, token));
    const known = waiter?.revisions;
    const value = encodeMember({ ttl: request.ttl, session: session.ttl });
    const n = keys.length;
    const ops: IRequestOp[] = [
      ...members.map((key) => ({ request_put: { key, value, lease: session.leaseId } })),
      ...members.map((key): IRequestOp => ({ request_range: { key, keys_only: true } })),
      ...ranges.map(ownerOp),
      ...ranges.map((range, i) => aheadOp(range, known?.[i])),
    ];
    const response = await this.rpc.run('acquire', (options) =>
      this.client.kv.txn({ success: ops }, options),
    );
    if (!session.alive) return 'session-lost';
    const revisions = members.map((_, i) => Number(firstKv(response, n + i)?.create_revision ?? 0));
    if (revisions.some((revision) => !(revision > 0))) {
      throw new LockBackendError(
        'etcd',
        'acquire',
        'etcd did not return the member key it just wrote',
      );
    }
    const owners = ranges.map((_, i) => firstKv(response, 2 * n + i));
    const blocked = ranges.map((_, i) => !owners[i]?.key.equals(members[i]));
    if (!blocked.some(Boolean)) return this.grant(session, request, members, revisions);

    if (!waiter) {
      waiter = { token, keys: [...keys], members, session, revisions, watches: new Map() };
      this.waiters.set(token, waiter);
    }
    waiter.revisions = revisions;
    this.queueDeadlines.schedule(token, performance.now() + (request.queueFor ?? 0));

    // The member just ahead in each blocked range, from the same transaction when possible.
    let fromRevision = Number(response.header.revision) + 1;
    const ahead = new Map<number, Buffer | undefined>();
    const unsure: number[] = [];
    ranges.forEach((_, i) => {
      if (!blocked[i]) return;
      const candidates = response.responses[3 * n + i]?.response_range?.kvs ?? [];
      const sameRevision = known !== undefined && known[i] === revisions[i];
      const found = candidates.find((kv) => Number(kv.create_revision) < revisions[i]);
      if (found && (sameRevision || known === undefined)) ahead.set(i, found.key);
      else unsure.push(i);
    });
    if (unsure.length > 0) {
      const reads = await this.rpc.run('acquire', (options) =>
        this.client.kv.txn(
          { success: unsure.map((i) => aheadOp(ranges[i], revisions[i])) },
          options,
        ),
      );
      fromRevision = Math.min(fromRevision, Number(reads.header.revision) + 1);
      unsure.forEach((i, j) => ahead.set(i, firstKv(reads, j)?.key));
    }
    if (!session.alive) return 'session-lost';
    // Still queued (not cancelled meanwhile): watch what is ahead.
    if (this.waiters.get(token) === waiter)
      this.watchAhead(waiter, [...ahead.values()], fromRevision);
    return { acquired: false, retryAfter: this.retryAfter(ranges, owners) };
  }

  private grant(
    session: EtcdSession,
    request: BackendAcquireRequest,
    members: readonly Buffer[],
    revisions: readonly number[],
  ): Attempt {
    if (!session.alive) return 'session-lost';
    this.dropWaiter(request.token);
    const entry: Held = {
      token: request.token,
      keys: [...request.keys],
      members,
      session,
      revisions,
      deadline: performance.now() + request.ttl,
    };
    this.held.set(request.token, entry);
    this.heldDeadlines.schedule(request.token, entry.deadline);
    return { acquired: true, fencingTokens: revisions };
  }

  /** Watches for the deletion of each member ahead; a missing one means "ahead already left". */
  private watchAhead(
    waiter: Waiter,
    ahead: readonly (Buffer | undefined)[],
    fromRevision: number,
  ): void {
    const wanted = new Map<string, Buffer>();
    let gone = false;
    for (const key of ahead) {
      if (key) wanted.set(key.toString('latin1'), key);
      else gone = true;
    }
    for (const [id, watcher] of waiter.watches) {
      if (wanted.has(id)) continue;
      waiter.watches.delete(id);
      this.stopWatch(watcher);
    }
    for (const [id, key] of wanted) {
      if (waiter.watches.has(id)) continue;
      const watcher = this.client
        .watch()
        .key(key)
        .only('delete')
        .startRevision(String(fromRevision))
        .watcher();
      // A cancelled watch (compaction, permission) may have missed the deletion: wake to re-check.
      watcher.on('error', () => this.aheadGone(waiter, id));
      watcher.on('delete', () => this.aheadGone(waiter, id));
      waiter.watches.set(id, watcher);
    }
    if (gone)
      setImmediate(() => this.waiters.get(waiter.token) === waiter && this.wake(waiter.token));
  }

  private aheadGone(waiter: Waiter, id: string): void {
    const watcher = waiter.watches.get(id);
    if (!watcher || this.waiters.get(waiter.token) !== waiter) return;
    waiter.watches.delete(id);
    this.stopWatch(watcher);
    this.wake(waiter.token);
  }

  private wake(token: string): void {
    const listeners = this.wakeListeners.get(token);
    if (!listeners) return;
    for (const listener of [...listeners]) {
      try {
        listener();
      } catch {
        // A listener's failure must not stop the others.
      }
    }
  }

  /** Upper bound of when the current owners may be gone without a wake-up, in ms. */
  private retryAfter(
    ranges: readonly EtcdLockRange[],
    owners: readonly (IKeyValue | undefined)[],
  ): number {
    let after = MIN_RETRY_AFTER;
    owners.forEach((owner, i) => {
      if (!owner) return;
      const own = this.ownRemaining(ranges[i], owner);
      const hint = decodeMember(owner.value);
      const bound =
        own ?? (hint ? Math.min(hint.ttl, hint.session) : this.sessionTtlSeconds * 1000);
      after = Math.max(after, Math.ceil(bound));
    });
    return after;
  }

  /** Remaining local ttl when `owner` is a lock this backend holds, else `undefined`. */
  private ownRemaining(range: EtcdLockRange, owner: IKeyValue): number | undefined {
    const token = memberToken(range, owner.key);
    const entry = token === undefined ? undefined : this.held.get(token);
    if (!entry || !entry.members.some((member) => member.equals(owner.key))) return undefined;
    return Math.max(0, Math.min(entry.deadline - performance.now(), entry.session.remaining()));
  }

  private async ensureSession(operation: string): Promise<EtcdSession> {
    if (this.session?.alive) return this.session;
    this.opening ??= EtcdSession.open(
      this.client,
      this.rpc,
      operation,
      this.sessionTtlSeconds,
      (session, loss) => this.sessionLost(session, loss),
    )
      .then(async (session) => {
        if (this.closed) {
          await session.revoke();
          throw new LockBackendError('etcd', operation, 'the backend was closed');
        }
        const previous = this.session;
        this.session = session;
        if (previous && previous !== session)
          previous.lose({ reason: 'the session lease deadline passed' });
        return session;
      })
      .finally(() => {
        this.opening = undefined;
      });
    return this.opening;
  }

  private sessionLost(session: EtcdSession, loss: EtcdSessionLoss): void {
    if (this.session === session) this.session = undefined;
    const locks: BackendLockRef[] = [];
    for (const [token, entry] of [...this.held]) {
      if (entry.session !== session) continue;
      this.held.delete(token);
      this.heldDeadlines.cancel(token);
      locks.push({ keys: entry.keys, token });
    }
    const woken: string[] = [];
    for (const [token, waiter] of [...this.waiters]) {
      if (waiter.session !== session) continue;
      this.dropWaiter(token);
      woken.push(token);
    }
    for (const [token, guard] of [...this.guards]) {
      if (guard.session !== session) continue;
      this.guards.delete(token);
      this.guardDeadlines.cancel(token);
    }
    this.cleaner.dropSession(session);
    // Make etcd drop the keys now, in case the lease outlives our conservative local deadline.
    void session.revoke();
    if (locks.length > 0) {
      const event: EtcdLocksLostEvent = { locks, reason: loss.reason, cause: loss.cause };
      for (const listener of [...this.lostListeners]) {
        try {
          listener(event);
        } catch {
          // A listener's failure must not stop the others.
        }
      }
    }
    for (const token of woken) this.wake(token);
  }

  private expireHeld(token: string): void {
    const entry = this.held.get(token);
    if (!entry) return;
    if (entry.deadline > performance.now()) {
      this.heldDeadlines.schedule(token, entry.deadline);
      return;
    }
    this.held.delete(token);
    this.heldDeadlines.cancel(token);
    this.cleaner.add(token, entry.members, entry.session);
  }

  private expireWaiter(token: string): void {
    if (this.running.has(token)) {
      // An attempt is refreshing the entry right now; look again once it has had its budget.
      this.queueDeadlines.schedule(token, performance.now() + this.rpc.timeout);
      return;
    }
    const waiter = this.dropWaiter(token);
    if (waiter) this.cleaner.add(token, waiter.members, waiter.session);
  }

  /** Schedules deletion of the members a failed attempt may have written (see top comment). */
  private guard(token: string, keys: readonly string[], session: EtcdSession): void {
    const members = keys.map((key) => memberKey(key, session.leaseHex, token));
    this.guards.set(token, { members, session });
    this.guardDeadlines.schedule(token, performance.now() + this.rpc.timeout + DELAYED_APPLY_GRACE);
    if (!this.held.has(token) && !this.waiters.has(token))
      this.cleaner.add(token, members, session);
  }

  private fireGuard(token: string): void {
    const guard = this.guards.get(token);
    if (!guard) return;
    if (this.running.has(token)) {
      this.guardDeadlines.schedule(token, performance.now() + this.rpc.timeout);
      return;
    }
    this.guards.delete(token);
    const tracked = this.held.get(token) ?? this.waiters.get(token);
    if (tracked?.session === guard.session) return;
    this.cleaner.add(token, guard.members, guard.session);
  }

  private dropWaiter(token: string): Waiter | undefined {
    const waiter = this.waiters.get(token);
    if (!waiter) return undefined;
    this.waiters.delete(token);
    this.queueDeadlines.cancel(token);
    for (const watcher of waiter.watches.values()) this.stopWatch(watcher);
    waiter.watches.clear();
    return waiter;
  }

  private stopWatch(watcher: Watcher): void {
    watcher.removeAllListeners('delete');
    watcher.removeAllListeners('error');
    // etcd3 emits 'error' on the watcher; without a listener that would throw.
    watcher.on('error', () => undefined);
    const cancelled = watcher.cancel().catch(() => undefined);
    this.cancelling.add(cancelled);
    void cancelled.finally(() => this.cancelling.delete(cancelled));
  }

  private enter(token: string): void {
    this.running.set(token, (this.running.get(token) ?? 0) + 1);
  }

  private exit(token: string): void {
    const count = (this.running.get(token) ?? 1) - 1;
    if (count > 0) this.running.set(token, count);
    else this.running.delete(token);
  }

  private assertOpen(operation: string): void {
    if (this.closed) throw new LockBackendError('etcd', operation, 'the backend is closed');
  }

  private validateKeys(operation: string, keys: readonly string[]): void {
    if (!Array.isArray(keys) || keys.length === 0) {
      throw new LockBackendError('etcd', operation, 'at least one key is required');
    }
    if (keys.length > MAX_KEYS) {
      throw new LockBackendError(
        'etcd',
        operation,
        `at most ${MAX_KEYS} keys per lock (etcd --max-txn-ops=${MAX_TXN_OPS})`,
      );
    }
    for (const key of keys) {
      const problem = invalidLockKey(key);
      if (problem) throw new LockBackendError('etcd', operation, problem);
    }
  }
}

type WatchBackoff = { readonly duration: number; next(): WatchBackoff };

/** Watch reconnect delays for clients the backend creates: 100 ms doubling to 2 s (etcd3: 30 s). */
function cappedBackoff(attempt: number): WatchBackoff {
  return {
    duration: Math.min(2_000, 100 * 2 ** attempt),
    next: () => cappedBackoff(Math.min(attempt + 1, 5)),
  };
}
