/*
 * etcd backend, after etcd's Go `concurrency` package (session + mutex); docs/architecture.md ("etcd backend") has
 * the long form. One acquire, one wake-up, one loss:
 *
 * - Acquire (etcd-acquire.txn.ts): ONE transaction per attempt. Lock `K` is the range `K\0...`;
 *   each holder or waiter puts a member `K\0<lease>-<token>` on the session lease (etcd.keys.ts).
 *   The lowest create revision holds the lock and is its fencing token; waiters queue behind it by
 *   create revision (FIFO); a multi-key lock writes all its members in the same transaction.
 * - Wake-up (etcd-queue.follower.ts, etcd-deletion.watcher.ts): a busy waiter follows the members
 *   ahead of it through one live deletion watch per key, shared by the process. When the last
 *   one is deleted, the lock is already the waiter's: the wake-up carries it (a handoff, no
 *   round trip).
 * - Loss (etcd.session.ts): one lease per backend, kept alive every TTL/3. When it is lost, every
 *   lock on it is reported through `onLost`, before etcd can grant it to anyone else;
 *   `leaseDeadline()` lets the engine see that even when its event loop stalled.
 *
 * The engine owns validity, releases grants whose validity ran out and retries `cancel` and orphan
 * releases. The backend keeps only what it alone knows: nothing on a live session expires, so a
 * member whose deletion failed is owed to the session until deleted; and an attempt whose answer
 * was lost may be applied by etcd after `cancel` ran, so its members are deleted again later
 * (`guard`).
 */
import { chunkByCost } from '../backend.batches';
import { errorMessage } from '../../errors/error.message';
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
import { WakeRegistry } from '../wake.registry';
import { attemptRequest, EtcdAttempt, readAttempt } from './etcd-acquire.txn';
import { EtcdLockBackendOptions, resolveEtcdOptions } from './etcd-backend.options';
import { createEtcdClient, loadEtcd3, tryLoadEtcd3 } from './etcd-client.loader';
import { EtcdDeletionWatcher } from './etcd-deletion.watcher';
import { EtcdTurn, followQueue } from './etcd-queue.follower';
import * as keys from './etcd.keys';
import { EtcdRpc, isLeaseNotFound } from './etcd.rpc';
import { EtcdSession, EtcdSessionLoss } from './etcd.session';
import { CompactList, compactList, itemCount, listItems } from '../../engine/compact.list';

/** A queued attempt sends 4 operations per key in one transaction. */
const MAX_KEYS = Math.floor(keys.MAX_TXN_OPS / 4);
/** How long etcd may still apply a request after its budget ran out, ms (see `guard`). */
const DELAYED_APPLY_GRACE = 10_000;
const MIN_RETRY_AFTER = 10;

/** A token this backend has members for: queued, or holding (granted or handed over). */
interface Entry {
  readonly token: string;
  /** The keys (see {@link keysOf}). */
  readonly keys: CompactList<string>;
  readonly session: EtcdSession;
  readonly ttl: number;
  /**
   * The members' create revisions: queue position, and fencing tokens when held (see
   * {@link revisionsOf}).
   */
  readonly revisions: CompactList<number>;
  held: boolean;
  /** Held: end of its ttl unless extended (monotonic ms), for `inspect` and `retryAfter`. */
  deadline: number;
  /** Queued: the attempt whose read the follow started from. */
  readonly attempt?: number;
  stopFollow?: () => void;
  expiry?: NodeJS.Timeout;
}

function keysOf(entry: Entry): readonly string[] {
  return listItems(entry.keys);
}

function revisionsOf(entry: Entry): readonly number[] {
  return listItems(entry.revisions);
}

/**
 * The member keys of an entry, made again at each use (release, renewal reads, inspect) rather
 * than kept: they follow from its keys, lease and token, and a kept Buffer per key cost about
 * 200 B of heap per held lock.
 */
function membersOf(entry: Entry): Buffer[] {
  return keysOf(entry).map((key) => keys.memberKey(key, entry.session.leaseHex, entry.token));
}

/**
 * An entry, held (`deadline` given) or queued. Every field is set here, in one order: an entry
 * lives as long as its lock, and entries built by spreading a shared base got a hidden class and
 * an out-of-object property array each.
 */
function newEntry(
  request: BackendAcquireRequest,
  session: EtcdSession,
  revisions: readonly number[],
  deadline: number | undefined,
): Entry {
  return {
    token: request.token,
    keys: compactList(request.keys),
    session,
    ttl: request.ttl,
    revisions: compactList(revisions),
    held: deadline !== undefined,
    deadline: deadline ?? 0,
    attempt: deadline === undefined ? request.attempt : undefined,
    stopFollow: undefined,
    expiry: undefined,
  };
}

/**
 * A {@link LockBackend} on etcd v3; the README's "etcd" section says how it works.
 *
 * ```ts
 * const backend = new EtcdLockBackend({ hosts: 'http://127.0.0.1:2379' });
 * ```
 */
export class EtcdLockBackend implements LockBackend {
  readonly name = 'etcd';
  readonly maxKeys = MAX_KEYS;
  /** The hosts, as given (`http://10.0.0.1:2379, http://10.0.0.2:2379`), or a user client's. */
  readonly endpoint: string;

  private readonly ownsClient: boolean;
  private readonly rpc: EtcdRpc;
  private readonly sessionTtlSeconds: number;
  private readonly watcher: EtcdDeletionWatcher;
  private readonly entries = new Map<string, Entry>();
  /** Attempts on the wire, per token: they answer for themselves. */
  private readonly running = new Map<string, number>();
  private readonly guards = new Set<NodeJS.Timeout>();
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
   * @throws TypeError for invalid options
   * @throws Error when the optional `etcd3` package is not installed (`npm i etcd3`)
   */
  constructor(options: EtcdLockBackendOptions) {
    const { client, clientOptions, sessionTtlSeconds, commandTimeout, endpoint } =
      resolveEtcdOptions(options);
    this.ownsClient = !client;
    this.endpoint = endpoint;
    const etcd3 = client ? tryLoadEtcd3() : loadEtcd3();
    const etcdClient = client ?? createEtcdClient(loadEtcd3(), clientOptions ?? { hosts: [] });
    this.rpc = new EtcdRpc(etcdClient, etcd3, commandTimeout, endpoint);
    this.sessionTtlSeconds = sessionTtlSeconds;
    this.watcher = new EtcdDeletionWatcher(this.rpc);
  }

  /** One linearizable read within `commandTimeout` (see {@link LockBackend.ping}). */
  async ping(): Promise<void> {
    this.assertOpen('ping');
    await this.rpc.ping();
  }

  /** {@inheritDoc LockBackend.acquire} */
  async acquire(request: BackendAcquireRequest): Promise<BackendAcquireResult> {
    this.assertOpen('acquire');
    this.checkKeys('acquire', request.keys);
    if (!(request.ttl > 0) || !Number.isFinite(request.ttl)) {
      throw new LockBackendError('etcd', 'acquire', 'ttl must be a finite number of ms > 0');
    }
    const { token } = request;
    this.running.set(token, (this.running.get(token) ?? 0) + 1);
    let session: EtcdSession | undefined;
    try {
      // A second round only when the session was lost under the first.
      for (let round = 0; round < 2; round++) {
        const current = (session = await this.ensureSession());
        const result = await this.attempt(current, request).catch((err: unknown) => {
          if (!isLeaseNotFound(err)) throw err;
          current.lose({ reason: 'etcd no longer knows the session lease', cause: err });
          return undefined;
        });
        if (result) return result;
      }
      throw new Error('the session lease was lost twice during the attempt');
    } catch (err) {
      if (session?.alive) this.guard(token, request.keys, session);
      if (err instanceof LockBackendError) throw err;
      const message = errorMessage(err);
      throw new LockBackendError('etcd', 'acquire', message, { cause: err });
    } finally {
      const left = (this.running.get(token) ?? 1) - 1;
      if (left > 0) this.running.set(token, left);
      else this.running.delete(token);
    }
  }

  /** {@inheritDoc LockBackend.extend} */
  async extend(requests: readonly BackendExtendRequest[]): Promise<boolean[]> {
    this.assertOpen('extend');
    const held = requests.map(({ token, ttl }) => {
      const entry = this.entries.get(token);
      const valid = entry?.held && entry.session.alive && ttl > 0 && Number.isFinite(ttl);
      return valid ? entry : undefined;
    });
    const intact = await this.readIntact(held.filter((entry) => entry !== undefined));
    const now = performance.now();
    return held.map((entry, i) => {
      // A release or loss that happened meanwhile wins.
      if (!entry || this.entries.get(entry.token) !== entry || !entry.session.alive) return false;
      if (intact.get(entry)) {
        entry.deadline = now + requests[i].ttl;
        return true;
      }
      // Deleted by someone else: drop what is left of it, and ask whether the lease is gone.
      this.take(entry.token);
      entry.session.owe(membersOf(entry));
      entry.session.probe();
      return false;
    });
  }

  /** {@inheritDoc LockBackend.release} */
  async release(ref: BackendLockRef): Promise<boolean> {
    this.assertOpen('release');
    const entry = this.entries.get(ref.token);
    if (!entry?.held) return false;
    this.take(ref.token);
    if (!entry.session.alive) return false;
    const response = await entry.session.delete('release', membersOf(entry));
    const deleted = response.responses.map((op) => Number(op.response_delete_range?.deleted));
    return deleted.every((count) => count === 1);
  }

  /**
   * {@inheritDoc LockBackend.cancel}
   *
   * @privateRemarks
   * Member keys follow from key, lease and token: this deletes every member the token can have on
   * the session, known here or not (an attempt whose answer was lost).
   */
  async cancel(ref: BackendLockRef): Promise<void> {
    const entry = this.take(ref.token);
    const session = this.session;
    // Without a live session, the lease takes the members along.
    if (this.closed || !session?.alive) return;
    const all = new Set([...ref.keys, ...(entry ? keysOf(entry) : [])]);
    await session.delete(
      'cancel',
      [...all].map((key) => keys.memberKey(key, session.leaseHex, ref.token)),
    );
  }

  /** {@inheritDoc LockBackend.inspect} */
  async inspect(key: string): Promise<BackendLockInfo> {
    this.assertOpen('inspect');
    this.checkKeys('inspect', [key]);
    const response = await this.rpc.txn('inspect', {
      success: [keys.ownerOp(keys.lockRange(key))],
    });
    const owner = keys.kvsAt(response, 0)[0];
    if (!owner) return { held: false };
    const fencingToken = Number(owner.create_revision);
    const own = this.ownRemaining(owner.key);
    if (own !== undefined) return { held: true, ttl: own, fencingToken };
    let ttl = keys.decodeHint(owner.value)?.ttl;
    if (owner.lease !== '0') {
      // Bounded by the holder's lease too: a dead holder's lock ends with it.
      const lease = await this.rpc.run('inspect', (options) =>
        this.rpc.client.leaseClient.leaseTimeToLive({ ID: owner.lease }, options),
      );
      const leaseMs = Number(lease.TTL) * 1000;
      if (leaseMs >= 0) ttl = Math.min(ttl ?? leaseMs, leaseMs);
    }
    return ttl === undefined ? { held: true, fencingToken } : { held: true, ttl, fencingToken };
  }

  /**
   * {@inheritDoc LockBackend.onWake}
   *
   * @privateRemarks
   * When every member ahead of the waiter is deleted, the lock is already its own: the wake-up
   * carries it as a handoff, held until released like any grant.
   */
  onWake(token: string, listener: WakeListener): Unsubscribe {
    return this.wakes.add(token, listener);
  }

  /** Until when the session lease is known alive (monotonic ms); `Infinity` without a session. */
  leaseDeadline(): number {
    return this.session ? this.session.deadline : Infinity;
  }

  /** Calls `listener` once per lost session with every lock held on it. */
  onLost(listener: (event: BackendLossEvent) => void): Unsubscribe {
    this.lostListeners.add(listener);
    return () => {
      this.lostListeners.delete(listener);
    };
  }

  /**
   * Revokes the session lease (every lock and queue entry of this backend goes with it), stops
   * every timer and watch, and closes the client if the backend created it. Never rejects.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    for (const timer of this.guards) clearTimeout(timer);
    for (const token of [...this.entries.keys()]) this.take(token);
    this.wakes.clear();
    this.lostListeners.clear();
    const session = this.session;
    this.session = undefined;
    // A session still opening revokes itself once it sees the backend closed.
    await this.opening?.catch(() => undefined);
    await Promise.all([session?.revoke(), this.watcher.close()]);
    if (this.ownsClient) this.rpc.client.close();
  }

  /** One attempt on `session`; `undefined` when the session was lost under it. */
  private async attempt(
    session: EtcdSession,
    request: BackendAcquireRequest,
  ): Promise<BackendAcquireResult | undefined> {
    const { token, ttl } = request;
    const queue = (request.queueFor ?? 0) > 0;
    const entry = this.entries.get(token);
    const known = entry?.session === session && same(keysOf(entry), request.keys);
    const members = request.keys.map((key) => keys.memberKey(key, session.leaseHex, token));
    session.forgive(members);
    const plan: EtcdAttempt = {
      ranges: request.keys.map(keys.lockRange),
      members,
      queue,
      known: known && queue ? revisionsOf(entry) : undefined,
      value: keys.encodeHint({ ttl, session: session.ttl }),
      leaseId: session.leaseId,
    };
    const response = await this.rpc.txn('acquire', attemptRequest(plan));
    this.assertOpen('acquire');
    if (!session.alive) return undefined;
    const answer = readAttempt(plan, response);

    if (answer.granted) {
      this.track(newEntry(request, session, answer.revisions, performance.now() + ttl));
      return { acquired: true, fencingTokens: answer.revisions };
    }
    if (queue) {
      const waiter = this.track(newEntry(request, session, answer.revisions, undefined));
      waiter.expiry = this.expireAfter(waiter, request.queueFor ?? 0);
      waiter.stopFollow = followQueue(this.watcher, answer.aheads, answer.revision, (turn) =>
        this.turn(waiter, turn),
      );
    }
    // Keys we already own (a multi-key wait) do not bound it.
    const bounds = answer.owners.map((owner, i) =>
      owner && !owner.key.equals(members[i]) ? this.holderBound(owner) : 0,
    );
    return { acquired: false, retryAfter: Math.max(MIN_RETRY_AFTER, ...bounds) };
  }

  /** A queued waiter's turn came (`mine`), or it should read again (`retry`). */
  private turn(waiter: Entry, turn: EtcdTurn): void {
    const { token, session, attempt } = waiter;
    if (this.entries.get(token) !== waiter) return;
    // An attempt on the wire answers for itself; without a listener, the next attempt claims it.
    const handOver =
      turn === 'mine' &&
      attempt !== undefined &&
      this.wakes.has(token) &&
      !this.running.has(token) &&
      session.alive;
    if (!handOver) return this.wakes.wake(token);
    clearTimeout(waiter.expiry);
    waiter.held = true;
    waiter.deadline = performance.now() + waiter.ttl;
    this.wakes.wake(token, { attempt, fencingTokens: revisionsOf(waiter), ttl: waiter.ttl });
  }

  /** Deletes a queue entry no attempt refreshed within `queueFor` (the engine cancels first). */
  private expireAfter(waiter: Entry, ms: number): NodeJS.Timeout {
    const timer = setTimeout(
      () => {
        if (this.entries.get(waiter.token) !== waiter || waiter.held) return;
        if (!this.running.has(waiter.token))
          this.cancel({ keys: keysOf(waiter), token: waiter.token }).catch(() => undefined);
        else waiter.expiry = this.expireAfter(waiter, this.rpc.timeout);
      },
      Math.min(ms, 2_147_483_647),
    );
    return timer.unref();
  }

  /**
   * A failed attempt may still be applied by etcd (it sits in a leader's log, or a retry is on the
   * wire), after the engine's `cancel` ran: delete its members once that can no longer happen,
   * unless the token is using them again. A proposal stays pending only while etcd has no leader,
   * when keep-alives fail too: past a session ttl without them the session is lost and its lease
   * takes a late member along; before that, a leader commits or drops it.
   */
  private guard(token: string, lockKeys: readonly string[], session: EtcdSession): void {
    const members = lockKeys.map((key) => keys.memberKey(key, session.leaseHex, token));
    const timer = setTimeout(
      () => {
        this.guards.delete(timer);
        if (!this.entries.has(token) && !this.running.has(token)) session.owe(members);
      },
      this.rpc.timeout + Math.max(DELAYED_APPLY_GRACE, session.ttl),
    );
    this.guards.add(timer.unref());
  }

  private track(entry: Entry): Entry {
    this.take(entry.token);
    this.entries.set(entry.token, entry);
    return entry;
  }

  private take(token: string): Entry | undefined {
    const entry = this.entries.get(token);
    this.entries.delete(token);
    entry?.stopFollow?.();
    clearTimeout(entry?.expiry);
    return entry;
  }

  /** Which entries still have every member at the revision it was granted at. */
  private async readIntact(entries: readonly Entry[]): Promise<Map<Entry, boolean>> {
    const chunks = chunkByCost(entries, (entry) => itemCount(entry.keys), keys.MAX_TXN_OPS);
    const intact = new Map<Entry, boolean>();
    await Promise.all(
      chunks.map(async (chunk) => {
        const reads = chunk.flatMap((entry) => membersOf(entry).map(keys.readOp));
        const response = await this.rpc.txn('extend', { success: reads });
        let at = 0;
        for (const entry of chunk) {
          const revisions = revisionsOf(entry);
          const found = revisions.map((_, i) => keys.kvsAt(response, at + i)[0]);
          at += itemCount(entry.keys);
          intact.set(
            entry,
            found.every((kv, i) => Number(kv?.create_revision) === revisions[i]),
          );
        }
      }),
    );
    return intact;
  }

  /** Remaining ttl of a lock held here whose member is `member`, ms; else `undefined`. */
  private ownRemaining(member: Buffer): number | undefined {
    const entry = this.entries.get(keys.memberToken(member));
    if (!entry?.held || !membersOf(entry).some((own) => own.equals(member))) return undefined;
    return Math.max(0, Math.min(entry.deadline - performance.now(), entry.session.remaining()));
  }

  /** Upper bound, ms, of when the holder `owner` may be gone without a wake-up. */
  private holderBound(owner: { key: Buffer; value: Buffer }): number {
    const hint = keys.decodeHint(owner.value);
    const other = hint ? Math.min(hint.ttl, hint.session) : this.sessionTtlSeconds * 1000;
    return Math.ceil(this.ownRemaining(owner.key) ?? other);
  }

  private async ensureSession(): Promise<EtcdSession> {
    if (this.session?.alive) return this.session;
    this.opening ??= EtcdSession.open(this.rpc, this.sessionTtlSeconds, (session, loss) =>
      this.sessionLost(session, loss),
    )
      .then(async (session) => {
        if (this.closed) {
          await session.revoke();
          throw new LockBackendError('etcd', 'acquire', 'the backend was closed');
        }
        const previous = this.session;
        this.session = session;
        // Past its deadline, its timer just did not fire yet: report its locks lost now.
        previous?.lose({ reason: 'the session lease deadline passed' });
        return session;
      })
      .finally(() => {
        this.opening = undefined;
      });
    return this.opening;
  }

  /** Every lock on the session is lost; its waiters are woken to queue again on a new one. */
  private sessionLost(session: EtcdSession, loss: EtcdSessionLoss): void {
    if (this.session === session) this.session = undefined;
    const lost = [...this.entries.values()].filter((entry) => entry.session === session);
    lost.forEach((entry) => this.take(entry.token));
    // In case etcd still has the lease (our local deadline is early): drop its keys now.
    void session.revoke();
    const locks = lost.filter((e) => e.held).map((e) => ({ keys: keysOf(e), token: e.token }));
    if (locks.length > 0) {
      const event: BackendLossEvent = { locks, reason: loss.reason, cause: loss.cause };
      for (const listener of [...this.lostListeners]) {
        try {
          listener(event);
        } catch {
          // One listener's failure must not stop the others.
        }
      }
    }
    for (const entry of lost) if (!entry.held) this.wakes.wake(entry.token);
  }

  private assertOpen(operation: string): void {
    if (this.closed) throw new LockBackendError('etcd', operation, 'the backend is closed');
  }

  private checkKeys(operation: string, lockKeys: readonly string[]): void {
    const problem =
      !Array.isArray(lockKeys) || lockKeys.length === 0
        ? 'at least one key is required'
        : lockKeys.length > MAX_KEYS
          ? `at most ${MAX_KEYS} keys per lock (etcd --max-txn-ops=${keys.MAX_TXN_OPS})`
          : lockKeys.map(keys.invalidLockKey).find((p) => p !== undefined);
    if (problem) throw new LockBackendError('etcd', operation, problem);
  }
}

function same(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((key, i) => key === b[i]);
}
