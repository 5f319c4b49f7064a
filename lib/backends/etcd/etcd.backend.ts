/*
 * etcd backend, designed after etcd's Go `concurrency` package.
 *
 * Session (etcd.session.ts). One lease per backend, granted lazily on the first acquire, kept
 * alive in the background (every TTL/3) and shared by every lock and queue entry of the backend.
 * It protects against the process dying: when keep-alives stop, etcd deletes every key on the
 * lease within `sessionTtl`. When the session is lost (etcd answers that the lease is gone, or no
 * keep-alive was answered before a local deadline that always falls before etcd's), every lock on
 * it is reported lost at once: `extend` returns false for them, `onLost` listeners hear about
 * them, its waiters are woken to queue again, and the next acquire opens a new session.
 *
 * Per-lock ttl. A shared lease cannot expire one lock, and the process may live on while it stops
 * renewing a lock (renewal disabled, a stuck event loop that later recovers). The engine owns
 * every lock's validity: a lock is valid until the earliest of its own ttl and the session lease
 * (`leaseDeadline()`), checked whenever it is read, and a lock whose validity ran out is released
 * by the engine (owner-checked). So a lock ends at whichever comes first: its own ttl (process
 * alive) or the session lease (process dead). Member keys store the holder's ttl and session TTL
 * so that other processes can bound their `retryAfter` by them.
 *
 * Keys (etcd.keys.ts). Lock `K` owns the range `K\0...`; every holder or waiter writes its own
 * member key `K\0<lease hex>-<token>` on the session lease. The member with the lowest create
 * revision in the range holds the lock; its create revision is the fencing token (strictly
 * increasing: a later holder's key was created after the previous holder's). Two acquisitions
 * from one process write two members, so at most one of them is the lowest.
 *
 * Acquire (etcd-acquire.attempts.ts). Every attempt is one transaction. "If every range is
 * empty, put my members" grants an uncontended lock; otherwise a try (no `queueFor`) only reads
 * the owners and leaves no trace, while a queued attempt puts its members in the same transaction
 * and reads them, the owners and the members ahead. A busy waiter's members stay, ordered by
 * create revision (FIFO). Its later attempts write nothing (the queue entry's expiry is local) and
 * make a linearizable read instead: are my members intact, who owns, who is ahead. A multi-key
 * lock writes all members in one transaction, so they share one create revision and every range
 * orders its waiters the same way: the oldest waiter is lowest everywhere, hence no deadlock. A
 * queue entry not refreshed by an attempt within `queueFor` is deleted.
 *
 * Wake-ups and handoff (etcd-waiter.registry.ts, etcd-queue.watcher.ts). A waiter follows the
 * members ahead of it in each blocked range (up to 16, nearest first) through one deletion watch
 * per lock key, shared by the process and created live (a watch per wait, started at the revision
 * of the waiter's read, would be served from etcd's "unsynced" group, caught up only every
 * 100 ms). Deletions only count down: nobody can queue ahead of an existing member, so once every
 * member that was ahead is gone the lock is the waiter's. It then becomes a held lock and the
 * wake-up carries it to the engine, with no further round trip, and only that waiter hears of it
 * (no herd). A waiter that had more members ahead than it follows is woken to read further once
 * those it follows are gone.
 *
 * Failures (etcd.rpc.ts, etcd-acquire.guard.ts, etcd.cleaner.ts). Every call has a budget
 * (`commandTimeout`) covering the client's own retries and fail-over, and fails with
 * `LockBackendError`. All writes are idempotent (same member key, same lease; compares evaluated
 * when applied), so retries are safe. Keys that a failed (ambiguous) acquire may still write later
 * are deleted in the background once no attempt of the token is running, and again after a grace
 * period that outlasts any delayed apply in etcd. `cancel` deletes whatever the token has: a queue
 * entry, a lock handed to it, or a grant whose answer was lost.
 */
import type { Etcd3 } from 'etcd3';
import { LockBackendError } from '../../errors/lock-backend.error';
import type {
  BackendAcquireRequest,
  BackendAcquireResult,
  BackendExtendRequest,
  BackendLockInfo,
  BackendLockRef,
  BackendLossEvent,
  LockBackend,
  Unsubscribe,
  WakeListener,
} from '../lock-backend.interface';
import { EtcdAcquireAttempts, EtcdAttempt } from './etcd-acquire.attempts';
import { EtcdAcquireGuard, EtcdGuard } from './etcd-acquire.guard';
import { EtcdLockBackendOptions, resolveEtcdOptions } from './etcd-backend.options';
import { loadEtcd3, tryLoadEtcd3 } from './etcd-client.loader';
import { readIntact } from './etcd-extend.batch';
import { EtcdHeldLock, EtcdHeldRegistry } from './etcd-held.registry';
import { EtcdQueueWatcher } from './etcd-queue.watcher';
import { deleteOp, ownerRange } from './etcd-txn.ops';
import { EtcdQueuedWaiter, EtcdWaiterRegistry } from './etcd-waiter.registry';
import { WakeRegistry } from '../wake.registry';
import { EtcdCleaner, MAX_TXN_OPS } from './etcd.cleaner';
import { decodeMember, invalidLockKey, lockRange, memberKey } from './etcd.keys';
import { EtcdRpc, isLeaseNotFound } from './etcd.rpc';
import { EtcdSession, EtcdSessionLoss } from './etcd.session';

/** Keys per multi-key lock: a queued attempt sends 4 operations per key in one transaction. */
const MAX_KEYS = Math.floor(MAX_TXN_OPS / 4);

/**
 * A {@link LockBackend} on etcd v3: one shared session lease, FIFO queues of member keys ordered
 * by create revision, fencing tokens from create revisions, handoff to the next waiter in its
 * wake-up. See the comment at the top of this file for the design.
 *
 * ```ts
 * const backend = new EtcdLockBackend({ hosts: 'http://127.0.0.1:2379' });
 * ```
 */
export class EtcdLockBackend implements LockBackend {
  /** Backend name used in logs and errors. */
  readonly name = 'etcd';
  /** Most keys per lock: {@link LockBackend.maxKeys}. */
  readonly maxKeys = MAX_KEYS;

  private readonly client: Etcd3;
  private readonly ownsClient: boolean;
  private readonly rpc: EtcdRpc;
  private readonly sessionTtlSeconds: number;
  private readonly cleaner: EtcdCleaner;
  private readonly held: EtcdHeldRegistry;
  private readonly waiters: EtcdWaiterRegistry;
  private readonly watcher: EtcdQueueWatcher;
  private readonly guard: EtcdAcquireGuard;
  private readonly attempts: EtcdAcquireAttempts;
  private readonly wakes = new WakeRegistry();
  private readonly lostListeners = new Set<(event: BackendLossEvent) => void>();

  private session?: EtcdSession;
  private opening?: Promise<EtcdSession>;
  private closed = false;
  private closing?: Promise<void>;

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
        faultHandling: { watchBackoff: watchBackoffSeed(), ...clientOptions.faultHandling },
      });
      this.ownsClient = true;
      this.rpc = new EtcdRpc(etcd3, resolved.commandTimeout);
    }
    this.cleaner = new EtcdCleaner(this.client, this.rpc);
    this.held = new EtcdHeldRegistry();
    this.guard = new EtcdAcquireGuard(this.rpc.timeout, (token, guard) =>
      this.guardDue(token, guard),
    );
    this.watcher = new EtcdQueueWatcher(this.client, this.rpc);
    this.waiters = new EtcdWaiterRegistry(this.watcher, {
      isRunning: (token) => this.guard.isRunning(token),
      retryDelay: this.rpc.timeout,
      expired: (waiter) => this.cleaner.add(waiter.token, waiter.members, waiter.session),
      handedOver: (waiter) => this.handedOver(waiter),
      nudge: (waiter) => this.wakes.wake(waiter.token),
    });
    this.attempts = new EtcdAcquireAttempts({
      client: this.client,
      rpc: this.rpc,
      held: this.held,
      waiters: this.waiters,
      cleaner: this.cleaner,
      sessionTtlSeconds: this.sessionTtlSeconds,
      assertOpen: (operation) => this.assertOpen(operation),
    });
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
    this.guard.enter(token);
    let session: EtcdSession | undefined;
    try {
      await this.cleaner.settle(token);
      for (let round = 0; round < 2; round++) {
        session = await this.ensureSession('acquire');
        let result: EtcdAttempt;
        try {
          result =
            request.queueFor !== undefined && request.queueFor > 0
              ? await this.attempts.queued(session, request)
              : await this.attempts.once(session, request);
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
      if (session?.alive) this.guardFailed(token, request.keys, session);
      throw err instanceof LockBackendError
        ? err
        : new LockBackendError(
            'etcd',
            'acquire',
            err instanceof Error ? err.message : String(err),
            { cause: err },
          );
    } finally {
      this.guard.exit(token);
    }
  }

  /** {@inheritDoc LockBackend.extend} */
  async extend(requests: readonly BackendExtendRequest[]): Promise<boolean[]> {
    this.assertOpen('extend');
    const results = requests.map(() => false);
    const checks: { index: number; lock: EtcdHeldLock; ttl: number }[] = [];
    requests.forEach((request, index) => {
      const lock = this.held.get(request.token);
      if (!lock || !lock.session.alive || !(request.ttl > 0) || !Number.isFinite(request.ttl)) {
        return;
      }
      checks.push({ index, lock, ttl: request.ttl });
    });
    if (checks.length === 0) return results;

    const intact = await readIntact(
      this.client,
      this.rpc,
      checks.map((check) => check.lock),
    );
    const applied = performance.now();
    const probed = new Set<EtcdSession>();
    for (const { index, lock, ttl } of checks) {
      // The lock must still be the live grant: an expiry or release that started meanwhile wins.
      if (!this.held.isCurrent(lock) || !lock.session.alive) continue;
      if (intact.get(lock)) {
        lock.deadline = applied + ttl;
        results[index] = true;
      } else {
        // Gone from etcd (deleted by someone else): forget it and remove any member left over.
        this.held.take(lock.token);
        this.cleaner.add(lock.token, lock.members, lock.session);
        probed.add(lock.session);
      }
    }
    for (const session of probed) session.probe();
    return results;
  }

  /** {@inheritDoc LockBackend.release} */
  async release(ref: BackendLockRef): Promise<boolean> {
    this.assertOpen('release');
    const lock = this.held.take(ref.token);
    if (!lock) return false;
    if (!lock.session.alive) return false;
    try {
      const response = await this.rpc.run('release', (options) =>
        this.client.kv.txn({ success: lock.members.map(deleteOp) }, options),
      );
      const deleted = response.responses.reduce(
        (sum, r) => sum + Number(r.response_delete_range?.deleted ?? 0),
        0,
      );
      return deleted === lock.members.length;
    } catch (err) {
      this.cleaner.add(ref.token, lock.members, lock.session);
      throw err;
    }
  }

  /**
   * {@inheritDoc LockBackend.cancel}
   *
   * Deletes, in one transaction, the members of the token's queue entry and of any lock it holds
   * (handed over by a release, or granted by an attempt whose answer was lost); keys that a failed
   * attempt may still write are deleted in the background. Meant for a token with no attempt in
   * flight, as the engine calls it.
   */
  async cancel(ref: BackendLockRef): Promise<void> {
    if (this.closed) return;
    const token = ref.token;
    const entries = [this.waiters.take(token), this.held.take(token)].filter(
      (entry): entry is EtcdQueuedWaiter | EtcdHeldLock => entry !== undefined,
    );
    const doomed = new Map<string, Buffer>();
    for (const entry of entries) {
      if (!entry.session.alive) continue;
      for (const member of entry.members) doomed.set(member.toString('latin1'), member);
    }
    const guard = this.guard.get(token);
    if (guard && guard.members.some((member) => !doomed.has(member.toString('latin1')))) {
      this.cleaner.add(token, guard.members, guard.session);
    }
    if (doomed.size === 0) return;
    try {
      await this.rpc.run('cancel', (options) =>
        this.client.kv.txn({ success: [...doomed.values()].map(deleteOp) }, options),
      );
    } catch (err) {
      for (const entry of entries) this.cleaner.add(token, entry.members, entry.session);
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
    const own = this.held.remaining(range, owner);
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

  /**
   * {@inheritDoc LockBackend.onWake}
   *
   * When every owner ahead of the waiter is deleted, the lock is already the waiter's: the wake-up
   * carries it as a {@link BackendHandoff} (reserved for the waiter's `ttl`, claimed by `extend`).
   */
  onWake(token: string, listener: WakeListener): Unsubscribe {
    return this.wakes.add(token, listener);
  }

  /**
   * Until when the current session lease is known alive (monotonic ms): the send time of the last
   * answered keep-alive plus the lease TTL, less a margin. See {@link LockBackend.leaseDeadline}.
   * `Infinity` while there is no session: then no lock of this backend is held.
   */
  leaseDeadline(): number {
    return this.session ? this.session.deadline : Infinity;
  }

  /**
   * Calls `listener` once per session loss with every lock that was held on that session, as soon
   * as the loss is known (etcd says the lease is gone, or keep-alives went unanswered until the
   * local lease deadline), which is before etcd can hand those locks to anyone else. Without it,
   * the loss shows up at the next `extend` of each lock (which returns false).
   *
   * @returns a function that removes the listener
   */
  onLost(listener: (event: BackendLossEvent) => void): Unsubscribe {
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
    this.cleaner.close();
    this.waiters.clear();
    this.held.clear();
    this.guard.clear();
    this.wakes.clear();
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
    await Promise.all([...sessions.map((session) => session.revoke()), this.watcher.close()]);
    if (this.ownsClient) this.client.close();
  }

  /**
   * Every member ahead of `waiter` was deleted: its members are the lowest of their ranges, so
   * the lock is its own. Hands it over in the wake-up when the waiter's caller listens and no attempt
   * of it is running (which would answer for itself); otherwise just wakes it, and its next
   * attempt finds the lock granted.
   */
  private handedOver(waiter: EtcdQueuedWaiter): void {
    const { token, session, attempt } = waiter;
    if (
      attempt === undefined ||
      !this.wakes.has(token) ||
      this.guard.isRunning(token) ||
      !session.alive
    ) {
      this.wakes.wake(token);
      return;
    }
    this.waiters.take(token);
    this.held.add({
      token,
      keys: waiter.keys,
      members: waiter.members,
      session,
      revisions: waiter.revisions,
      deadline: performance.now() + waiter.ttl,
    });
    this.wakes.wake(token, { attempt, fencingTokens: waiter.revisions, ttl: waiter.ttl });
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
    const locks: BackendLockRef[] = this.held
      .takeSession(session)
      .map((lock) => ({ keys: lock.keys, token: lock.token }));
    const woken = this.waiters.takeSession(session);
    this.guard.dropSession(session);
    this.cleaner.dropSession(session);
    // Make etcd drop the keys now, in case the lease outlives our conservative local deadline.
    void session.revoke();
    if (locks.length > 0) {
      const event: BackendLossEvent = { locks, reason: loss.reason, cause: loss.cause };
      for (const listener of [...this.lostListeners]) {
        try {
          listener(event);
        } catch {
          // A listener's failure must not stop the others.
        }
      }
    }
    for (const waiter of woken) this.wakes.wake(waiter.token);
  }

  /** Guards the members a failed attempt may still write (see etcd-acquire.guard.ts). */
  private guardFailed(token: string, keys: readonly string[], session: EtcdSession): void {
    const members = keys.map((key) => memberKey(key, session.leaseHex, token));
    this.guard.add(token, members, session);
    if (!this.held.get(token) && !this.waiters.get(token)) {
      this.cleaner.add(token, members, session);
    }
  }

  private guardDue(token: string, guard: EtcdGuard): void {
    const tracked = this.held.get(token) ?? this.waiters.get(token);
    if (tracked?.session === guard.session) return;
    this.cleaner.add(token, guard.members, guard.session);
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

/**
 * Watch reconnect delays for clients the backend creates: 100 ms doubling to 2 s (etcd3: 30 s).
 * etcd3 starts from `seed.next()`, so the seed itself is never used as a delay.
 */
function watchBackoffSeed(): WatchBackoff {
  return { duration: 100, next: () => cappedBackoff(0) };
}

function cappedBackoff(attempt: number): WatchBackoff {
  return {
    duration: Math.min(2_000, 100 * 2 ** attempt),
    next: () => cappedBackoff(Math.min(attempt + 1, 5)),
  };
}
