import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import { LockBackendError } from '../../errors/lock-backend.error';
import { errorMessage } from '../../errors/error.message';
import { chunkByCost } from '../backend.batches';
import type {
  BackendAcquireRequest,
  BackendAcquireResult,
  BackendExtendRequest,
  BackendLockInfo,
  BackendLockRef,
  LockBackend,
  Unsubscribe,
  WakeListener,
} from '../lock-backend.interface';
import { WakeRegistry } from '../wake.registry';
import { RedisConnection } from '../redis/redis.connection';
import { lockHashKey } from '../redis/redis.keys';
import type { RedisScript } from '../redis/redis.scripts';
import { RedisWakeSubscriber } from '../redis/redis-wake.subscriber';
import {
  resolveRedlockLockBackendOptions,
  type RedlockLockBackendOptions,
} from './redlock-backend.options';
import { loadIoredis, OWN_CONNECTION_OVERRIDES } from '../redis/redis-client.loader';
import { answered, failures, firstDecision, type MasterAnswer } from './redlock.quorum';
import { REDLOCK_SCRIPTS, redlockArgv } from './redlock.scripts';

/** Most lock keys in one extend script call on one master (a script blocks its master). */
const MAX_BATCH_KEYS = 1000;
/**
 * After a split vote (the key free or ours on some masters, nobody holding a quorum), rivals
 * retry at once and would split again: each retries after a random pause in this range (ms).
 */
const SPLIT_RETRY_MIN = 5;
const SPLIT_RETRY_SPREAD = 50;
/** Spread (ms) per racing waiter of the wake-ups after a release, capped at WAKE_SPREAD_MAX. */
const WAKE_SPREAD_PER_WAITER = 10;
const WAKE_SPREAD_MAX = 100;
/** `retryAfter` cap (ms) while fewer than a quorum of wake-up subscriptions are live. */
const BLIND_RETRY = 1000;

/** One master: its command connection and its wake-up subscription. */
interface Master {
  readonly endpoint: string;
  readonly connection: RedisConnection<Redis>;
  readonly wake: RedisWakeSubscriber;
}

/** What one master answered to an acquire attempt. */
type MasterGrant =
  | { readonly granted: true }
  | {
      readonly granted: false;
      readonly pttl: number;
      readonly owner: string;
      readonly waiters: number;
    };

/** A waiter's wake-up state, kept only while someone listens for its token. */
interface WaitState {
  /** Registrations of the token (onWake calls not yet undone). */
  listeners: number;
  /** A wake-up since the token's last attempt was passed on: later copies are dropped. */
  armed: boolean;
  /** Waiters on the key at the last attempt, counting this one. */
  waiters: number;
}

/**
 * Redlock over N independent Redis masters (no replication between them), through ioredis.
 *
 * One attempt runs the owner-checked set-if-absent script on every master in parallel, each
 * bounded by `commandTimeout`, and succeeds once a quorum (N/2 + 1) granted, within the
 * validity the engine computes from the attempt's send time (ttl − elapsed − 1 % − 2 ms);
 * partial grants are deleted at once on every master. Extend and release are owner-checked on
 * every master and succeed with a quorum. A call answers as soon as its outcome is decided, so a
 * minority of stopped masters costs no time; with no quorum reachable it is an outage
 * (`LockBackendError`), never "busy".
 *
 * Fairness: there is no queue across masters (each would order waiters its own way, and a FIFO
 * that holds on a majority needs consensus, which is what etcd is for). A busy attempt records
 * the waiter on each master that refused it; a release wakes every recorded waiter through every
 * master, so a freed lock is retried at once (the first wake-up counts, its copies are dropped),
 * and waiters that race each other are spread by a random delay. The lock goes to whichever
 * retry reaches a quorum first: no order of arrival, no handoff, and a waiter can be overtaken
 * indefinitely under contention. What it does keep: a waiter never waits on its own partial keys
 * (they are released, and a retry takes keys it owns), and a released lock is never left idle
 * until some holder's ttl.
 *
 * No fencing tokens: the masters share no counter, and no number this backend could hand out is
 * known to increase (`fencing: false`; `lock.fencingToken` throws). Mutual exclusion relies on
 * timing: a master that restarts without persistence (or loses writes) and rejoins within a ttl
 * can give a second owner a quorum with the masters it did not share with the first; restart
 * masters after a ttl (Redis `appendonly yes` with `appendfsync always`, or a delayed restart).
 *
 * @example
 * new RedlockLockBackend({ urls: ['redis://10.0.0.1:6379', 'redis://10.0.0.2:6379', 'redis://10.0.0.3:6379'] })
 */
export class RedlockLockBackend implements LockBackend {
  /** `redlock`. */
  readonly name = 'redlock';
  /** No fencing tokens: see the class comment. */
  readonly fencing = false as const;
  /** The masters' `host:port`, comma-separated; never credentials. */
  readonly endpoint: string;
  /** Masters that must agree: N/2 + 1. */
  readonly quorum: number;
  private readonly masters: readonly Master[];
  private readonly channel: string;
  private readonly listeners = new WakeRegistry();
  private readonly waits = new Map<string, WaitState>();

  /**
   * @throws TypeError when the options are missing or invalid
   * @throws Error when ioredis is not installed (with `urls`)
   */
  constructor(options: RedlockLockBackendOptions) {
    const settings = resolveRedlockLockBackendOptions(options);
    const { commandTimeout } = settings;
    this.channel = `${settings.channelPrefix}${randomBytes(12).toString('hex')}`;
    this.endpoint = settings.endpoints.join(', ');
    this.quorum = Math.floor(settings.masters.length / 2) + 1;
    this.masters = settings.masters.map((connection, i) => {
      let client: Redis;
      // Cluster clients were refused with the options.
      if (connection.kind === 'client') client = connection.client as Redis;
      else if (connection.kind === 'url') {
        const Redis = loadIoredis('RedlockLockBackend');
        client = new Redis(connection.url, { ...OWN_CONNECTION_OVERRIDES });
      } else throw new TypeError(`RedlockLockBackend: master ${i} is neither a URL nor a client`);
      const owned = connection.kind !== 'client';
      return {
        endpoint: settings.endpoints[i],
        connection: new RedisConnection(client, owned, commandTimeout),
        wake: new RedisWakeSubscriber(
          () =>
            client.duplicate({
              ...OWN_CONNECTION_OVERRIDES,
              autoResubscribe: true,
              lazyConnect: true,
            }),
          this.channel,
          commandTimeout,
        ),
      };
    });
  }

  /**
   * One `PING` to every master; resolves once a quorum answered.
   *
   * @throws LockBackendError naming each failing master's cause when no quorum answers
   */
  async ping(): Promise<void> {
    await this.onEvery(
      'ping',
      (m) => m.connection.run('ping', (client) => client.call('ping')),
      (answers) => (answered(answers).length >= this.quorum ? true : undefined),
    );
  }

  /**
   * One attempt on every master at once. See {@link LockBackend.acquire}. Never hands a lock
   * over: a waiter is woken and tries again.
   *
   * @throws LockBackendError when fewer than a quorum of masters answer
   */
  async acquire(request: BackendAcquireRequest): Promise<BackendAcquireResult> {
    const queueFor = request.queueFor === undefined ? 0 : Math.max(0, Math.ceil(request.queueFor));
    const wait = this.waits.get(request.token);
    if (wait) wait.armed = true;
    // Subscribed on a quorum before queueing: a holder's release publishes on a quorum too, so
    // the two overlap on at least one master.
    if (queueFor > 0) await this.subscribed();
    const ttl = Math.ceil(request.ttl);
    const started = performance.now();
    const argv = redlockArgv(request.keys, request.token, ttl, queueFor, this.channel);
    const calls = this.masters.map((m) =>
      this.script(m, 'acquire', REDLOCK_SCRIPTS.acquire, request.keys.length * 2, argv).then(
        (reply) => this.parseGrant(reply),
      ),
    );
    const answers = await firstDecision(calls, (so) => {
      const granted = answered(so).filter((a) => a.value.granted).length;
      const refused = so.filter((a) => a !== undefined).length - granted;
      return granted >= this.quorum || refused > this.masters.length - this.quorum
        ? [...so]
        : undefined;
    });
    const grants = answered(answers).filter((a) => a.value.granted).length;
    // Redlock's validity check: a grant that took longer than its ttl less the drift is none.
    const valid = ttl - (performance.now() - started) - (ttl * 0.01 + 2) > 0;
    if (grants >= this.quorum && valid) return { acquired: true, fencingTokens: [] };
    await this.dropPartial(request, answers);
    const failed = failures(answers);
    if (failed.length > this.masters.length - this.quorum) {
      throw this.noQuorum('acquire', failed);
    }
    return { acquired: false, retryAfter: this.retryAfter(request, answers, grants) };
  }

  /**
   * Extends each grant on every master; an entry is extended when a quorum extended it.
   * See {@link LockBackend.extend}.
   *
   * @throws LockBackendError when the outcome of an entry cannot be decided (too many failures)
   */
  async extend(requests: readonly BackendExtendRequest[]): Promise<boolean[]> {
    const chunks = chunkByCost(requests, (r) => r.keys.length, MAX_BATCH_KEYS);
    const results = (await Promise.all(chunks.map((c) => this.extendChunk(c)))).flat();
    // A grant that lost its quorum may still sit on a minority: free it there for the others.
    requests.forEach((r, i) => {
      if (!results[i]) void this.release(r).catch(() => undefined);
    });
    return results;
  }

  /**
   * Deletes the token's keys on every master and wakes their waiters. Resolves `true` when a
   * quorum held them, `false` when enough did not that no quorum can have. See
   * {@link LockBackend.release}.
   *
   * @throws LockBackendError when too many masters fail to decide
   */
  async release(ref: BackendLockRef): Promise<boolean> {
    const calls = this.masters.map((m) => this.releaseOn(m, ref));
    return this.decideQuorum('release', calls, (reply) => reply === 1);
  }

  /**
   * Removes the token's waiter entries and keys on every master; resolves once a quorum did.
   * Whatever a failing minority still has of it expires with its ttl (or the wait). Idempotent.
   *
   * @throws LockBackendError when fewer than a quorum of masters answer
   */
  async cancel(ref: BackendLockRef): Promise<void> {
    const argv = redlockArgv(ref.keys, ref.token);
    await this.onEvery(
      'cancel',
      (m) => this.script(m, 'cancel', REDLOCK_SCRIPTS.cancel, ref.keys.length * 2, argv),
      (answers) => (answered(answers).length >= this.quorum ? true : undefined),
    );
  }

  /**
   * Reports `key` held when one owner holds it on a quorum of masters; its `ttl` is how long a
   * quorum still has it. No fencing token.
   *
   * @throws LockBackendError when fewer than a quorum of masters answer
   */
  async inspect(key: string): Promise<BackendLockInfo> {
    const n = this.masters.length;
    return this.onEvery(
      'inspect',
      (m) =>
        this.script(m, 'inspect', REDLOCK_SCRIPTS.inspect, 1, [lockHashKey(key)]).then((reply) => {
          if (!Array.isArray(reply)) throw this.badReply('inspect', reply);
          return reply.length === 2 && typeof reply[0] === 'string' && typeof reply[1] === 'number'
            ? { owner: reply[0], pttl: reply[1] }
            : undefined;
        }),
      (answers, pending) => {
        const byOwner = new Map<string, number[]>();
        for (const { value } of answered(answers)) {
          if (value) byOwner.set(value.owner, [...(byOwner.get(value.owner) ?? []), value.pttl]);
        }
        for (const pttls of byOwner.values()) {
          if (pttls.length >= this.quorum) {
            const ttl = pttls.sort((a, b) => b - a)[this.quorum - 1];
            return ttl > 0 ? { held: true, ttl } : { held: true };
          }
        }
        const most = Math.max(0, ...[...byOwner.values()].map((p) => p.length));
        const reachable = n - failures(answers).length;
        if (reachable >= this.quorum && most + pending < this.quorum) return { held: false };
        return undefined;
      },
    );
  }

  /**
   * See {@link LockBackend.onWake}. A release wakes through every master; the first wake-up after
   * each attempt is passed on, with a random delay when several waiters race for the key.
   */
  onWake(token: string, listener: WakeListener): Unsubscribe {
    const stop = this.listeners.add(token, listener);
    const state = this.waits.get(token) ?? { listeners: 0, armed: true, waiters: 1 };
    state.listeners++;
    this.waits.set(token, state);
    const relays = this.masters.map((m) => m.wake.on(token, () => this.woken(token)));
    let registered = true;
    return () => {
      if (!registered) return;
      registered = false;
      stop();
      for (const relay of relays) relay();
      if (--state.listeners === 0) this.waits.delete(token);
    };
  }

  /**
   * Closes what this backend opened: every pub/sub connection, and the command connections
   * unless they are the user's `clients`. Idempotent.
   */
  async close(): Promise<void> {
    this.listeners.clear();
    this.waits.clear();
    await Promise.all(this.masters.flatMap((m) => [m.wake.close(), m.connection.close()]));
  }

  private woken(token: string): void {
    const state = this.waits.get(token);
    if (!state?.armed) return;
    state.armed = false;
    // Alone on the key: no one to collide with. Several: every one of them was woken now.
    if (state.waiters <= 1) this.listeners.wake(token);
    else {
      const spread = Math.min(WAKE_SPREAD_MAX, WAKE_SPREAD_PER_WAITER * state.waiters);
      this.listeners.wake(token, undefined, Math.floor(Math.random() * spread));
    }
  }

  /**
   * Resolves once a quorum of wake-up subscriptions is up.
   *
   * @throws LockBackendError when a quorum cannot be: those masters are unreachable, and letting
   *   the attempt find out again would spend a second commandTimeout
   */
  private async subscribed(): Promise<void> {
    const pending = this.masters.map((m) => m.wake.subscribe());
    if (pending.every((p) => p === undefined)) return;
    const failed = await firstDecision(
      pending.map((p) => p ?? Promise.resolve()),
      (answers, left) => {
        const ok = answered(answers).length;
        if (ok >= this.quorum) return [];
        return ok + left < this.quorum ? failures(answers) : undefined;
      },
    );
    if (failed.length > 0) throw this.noQuorum('acquire', failed);
  }

  private parseGrant(reply: unknown): MasterGrant {
    if (reply === 1) return { granted: true };
    if (
      Array.isArray(reply) &&
      reply.length === 4 &&
      reply[0] === 0 &&
      typeof reply[1] === 'number' &&
      typeof reply[2] === 'string' &&
      typeof reply[3] === 'number'
    ) {
      return { granted: false, pttl: reply[1], owner: reply[2], waiters: reply[3] };
    }
    throw this.badReply('acquire', reply);
  }

  /**
   * Deletes, owner-checked, what a failed attempt may have left: on the masters that granted and
   * on those that did not answer yet (their grant may still come; the release runs after it on
   * the same connection). Awaited where the master answered, so the retry finds the keys freed.
   */
  private async dropPartial(
    request: BackendAcquireRequest,
    answers: readonly (MasterAnswer<MasterGrant> | undefined)[],
  ): Promise<void> {
    const awaited: Promise<unknown>[] = [];
    this.masters.forEach((m, i) => {
      const answer = answers[i];
      if (answer?.ok && !answer.value.granted) return;
      const release = this.releaseOn(m, request).catch(() => undefined);
      if (answer?.ok) awaited.push(release);
    });
    await Promise.all(awaited);
  }

  /** When a busy waiter should try again without a wake-up, and how hard waiters race. */
  private retryAfter(
    request: BackendAcquireRequest,
    answers: readonly (MasterAnswer<MasterGrant> | undefined)[],
    grants: number,
  ): number {
    const busy: { pttl: number; owner: string; waiters: number }[] = [];
    for (const { value } of answered(answers)) if (!value.granted) busy.push(value);
    const owners = new Map<string, number>();
    for (const b of busy) owners.set(b.owner, (owners.get(b.owner) ?? 0) + 1);
    const holder = [...owners.values()].some((count) => count >= this.quorum);
    // The lock is free for us once `need` more masters dropped their holder.
    const pttls = busy.map((b) => Math.max(1, b.pttl)).sort((a, b) => a - b);
    const need = Math.max(1, this.quorum - grants);
    let retry = pttls[Math.min(need, pttls.length) - 1] ?? request.ttl;
    if (!holder && (grants > 0 || owners.size > 1)) {
      // A split vote: nobody holds a quorum, everyone released; collide less on the retry.
      retry = Math.min(retry, SPLIT_RETRY_MIN + Math.floor(Math.random() * SPLIT_RETRY_SPREAD));
    }
    const wait = this.waits.get(request.token);
    if (wait) wait.waiters = Math.max(1, ...busy.map((b) => b.waiters));
    const live = this.masters.filter((m) => m.wake.live).length;
    if ((request.queueFor ?? 0) > 0 && live < this.quorum) retry = Math.min(retry, BLIND_RETRY);
    return Math.max(1, Math.ceil(retry));
  }

  private async extendChunk(requests: readonly BackendExtendRequest[]): Promise<boolean[]> {
    const keys: string[] = [];
    const args: (string | number)[] = [];
    for (const request of requests) {
      for (const key of request.keys) keys.push(lockHashKey(key));
      args.push(request.keys.length, request.token, Math.ceil(request.ttl));
    }
    const n = this.masters.length;
    const calls = this.masters.map((m) =>
      this.script(m, 'extend', REDLOCK_SCRIPTS.extend, keys.length, [...keys, ...args]).then(
        (reply) => {
          if (!Array.isArray(reply) || reply.length !== requests.length) {
            throw this.badReply('extend', reply);
          }
          return reply.map((held) => held === 1);
        },
      ),
    );
    return firstDecision(calls, (answers, pending) => {
      const replies = answered(answers).map((a) => a.value);
      const decided = requests.map((_, r) => {
        const yes = replies.filter((reply) => reply[r]).length;
        if (yes >= this.quorum) return true;
        if (replies.length - yes > n - this.quorum) return false;
        return undefined;
      });
      if (decided.every((d): d is boolean => d !== undefined)) return decided;
      if (pending === 0) throw this.noQuorum('extend', failures(answers));
      return undefined;
    });
  }

  /** Resolves `true` at a quorum of `yes`, `false` once no quorum can say yes. */
  private decideQuorum<T>(
    operation: string,
    calls: readonly Promise<T>[],
    yes: (value: T) => boolean,
  ): Promise<boolean> {
    const n = this.masters.length;
    return firstDecision(calls, (answers, pending) => {
      const values = answered(answers).map((a) => a.value);
      const ayes = values.filter(yes).length;
      if (ayes >= this.quorum) return true;
      if (values.length - ayes > n - this.quorum) return false;
      if (pending === 0) throw this.noQuorum(operation, failures(answers));
      return undefined;
    });
  }

  /** Runs `call` on every master; `decide` answers from a quorum, else a quorum failure. */
  private onEvery<T, R>(
    operation: string,
    call: (master: Master) => Promise<T>,
    decide: (answers: readonly (MasterAnswer<T> | undefined)[], pending: number) => R | undefined,
  ): Promise<R> {
    const n = this.masters.length;
    return firstDecision(
      this.masters.map((m) => call(m)),
      (answers, pending) => {
        const result = decide(answers, pending);
        if (result !== undefined) return result;
        const failed = failures(answers);
        if (failed.length > n - this.quorum || pending === 0)
          throw this.noQuorum(operation, failed);
        return undefined;
      },
    );
  }

  private releaseOn(master: Master, ref: BackendLockRef): Promise<unknown> {
    const argv = redlockArgv(ref.keys, ref.token);
    return this.script(master, 'release', REDLOCK_SCRIPTS.release, ref.keys.length * 2, argv).then(
      (reply) => {
        if (reply !== 0 && reply !== 1) throw this.badReply('release', reply);
        return reply;
      },
    );
  }

  private script(
    master: Master,
    operation: string,
    script: RedisScript,
    keyCount: number,
    argv: readonly (string | number)[],
  ): Promise<unknown> {
    return master.connection.script(operation, script, keyCount, argv);
  }

  /** The outage error: which masters failed, and why. */
  private noQuorum(
    operation: string,
    failed: readonly { readonly index: number; readonly error: unknown }[],
  ): LockBackendError {
    const causes = failed
      .map(({ index, error }) => {
        const detail = error instanceof LockBackendError ? error.detail : errorMessage(error);
        return `${this.masters[index].endpoint}: ${detail}`;
      })
      .join('; ');
    return new LockBackendError(
      this.name,
      operation,
      `no quorum: ${failed.length} of ${this.masters.length} masters failed and ${this.quorum} ` +
        `must answer (${causes})`,
      { cause: failed[0]?.error },
    );
  }

  private badReply(operation: string, reply: unknown): LockBackendError {
    return new LockBackendError(
      this.name,
      operation,
      `unexpected script reply ${JSON.stringify(reply)}`,
    );
  }
}
