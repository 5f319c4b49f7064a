import { chunkByCost } from '../backend.batches';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Cluster, ClusterOptions, Redis } from 'ioredis';
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
import { LockBackendError } from '../../errors/lock-backend.error';
import {
  assertIoredisOptions,
  redisEndpoint,
  resolveRedisLockBackendOptions,
  SENTINEL_CONNECTION_DEFAULTS,
  usesSentinels,
  type RedisLockBackendOptions,
  type RedisReplicaAcks,
  type ResolvedRedisLockBackendOptions,
} from './redis-backend.options';
import { RedisConnection } from './redis.connection';
import { clusterSlotOf, KEYS_PER_LOCK, keySlot, lockHashKey, scriptArgv } from './redis.keys';
import { CLUSTER_SCRIPTS, SCRIPTS, type RedisScript, type RedisScripts } from './redis.scripts';
import { RedisWakeSubscriber } from './redis-wake.subscriber';
import { RedisClusterWakeSubscriber } from './redis-cluster-wake.subscriber';
import type { RedisWakeChannels } from './redis-wake.message';
import { loadIoredis, OWN_CONNECTION_OVERRIDES } from './redis-client.loader';

/** The attempt number a handoff may be offered for; 0 (no offer) when there is none. */
function offerAttempt(attempt: number | undefined): number {
  return attempt !== undefined && Number.isSafeInteger(attempt) && attempt > 0 ? attempt : 0;
}

/**
 * Options a Cluster the backend opens gets over the user's: node connections as our own
 * (OWN_CONNECTION_OVERRIDES; ioredis keeps their offline queue on, so a command sent while a
 * node connection is still being made waits for it), and no cluster-level offline queue, since
 * RedisConnection waits for `ready` itself. ioredis resends TRYAGAIN and CLUSTERDOWN refusals
 * (which ran nothing) at once instead of after a delay, so that no resend of a timed-out
 * operation comes late; RedisConnection sends them again itself, only while their operation is
 * pending. ioredis's resend of a command whose node connection closed stays on: with it off,
 * the tests met "Connection is closed." outside any failover (in a handoff, in a release after
 * a migration), and failing those costs more than the rare resend of one that had run
 * (idempotent for acquire, extend and cancel; a resent release answers "not held").
 */
/** ioredis's default `slotsRefreshInterval`, ms: what a Cluster we make refreshes at unless told. */
const IOREDIS_SLOTS_REFRESH_INTERVAL = 5_000;

/**
 * Options of a Cluster client this backend makes. Its slot map is refreshed by our
 * RedisConnection, not by ioredis (`slotsRefreshInterval: 0`): see its `slotsRefreshEvery`.
 */
function ownClusterOptions(options: ClusterOptions): ClusterOptions {
  return {
    ...options,
    slotsRefreshInterval: 0,
    enableOfflineQueue: false,
    retryDelayOnTryAgain: 0,
    retryDelayOnClusterDown: 0,
    redisOptions: { ...options.redisOptions, ...OWN_CONNECTION_OVERRIDES },
  };
}

function isIntegerArray(value: unknown): value is number[] {
  if (!Array.isArray(value)) return false;
  for (const v of value) if (typeof v !== 'number' || !Number.isSafeInteger(v)) return false;
  return true;
}

/**
 * Lock backend on a single Redis server (or a primary with replicas), through ioredis.
 *
 * Every operation is one Lua script call (extend: one per batch of up to `maxBatchKeys` keys),
 * atomic and owner-checked on the server. Waiters queue in FIFO order per key; a release hands
 * the lock to the oldest live waiter for `claimWindow` ms and wakes it by pub/sub, with the grant
 * itself for a single-key waiter, so that the engine takes it without a claim round trip. The
 * README's "Redis" section has the key layout, fencing tokens and costs.
 *
 * Limits worth knowing: Redis replicates asynchronously, so a failover can lose a grant and hand
 * the lock to a second owner, and a fencing token issued from data that was lost can be issued
 * again (tokens come from a counter per hash slot, not from the clock: whenever the last grant's
 * data survived, the next token is greater). Check fencing tokens in the resource you protect
 * when that matters. Needs Redis 5 or later (scripts read server TIME before writing), Redis 7
 * on Cluster (sharded pub/sub, see {@link RedisLockBackendClusterOptions}); tested on Redis 7.0.
 *
 * @example
 * new RedisLockBackend({ url: 'redis://127.0.0.1:6379' })
 * new RedisLockBackend({ client: myIoredisClient, claimWindow: 1000 })
 * new RedisLockBackend({ sentinels: [{ host: 'sentinel-1', port: 26379 }], name: 'mymaster' })
 * new RedisLockBackend({ cluster: [{ host: 'redis-1', port: 6379 }] })
 */
export class RedisLockBackend implements LockBackend {
  /** `redis`. */
  readonly name = 'redis';
  /** `host:port` of the server (or the socket path, or the sentinels), never credentials. */
  readonly endpoint: string;
  private readonly settings: ResolvedRedisLockBackendOptions;
  private readonly connection: RedisConnection;
  private readonly wake: RedisWakeChannels;
  private readonly scripts: RedisScripts;
  /** On Redis Cluster: one slot per lock, checked before any call. */
  private readonly cluster: boolean;
  /**
   * On Redis Cluster only (see {@link LockBackend.assertKeys}): a lock's keys must share a hash
   * slot, and none may start with `}`.
   *
   * @throws TypeError naming the keys, their slots and the fix
   */
  readonly assertKeys?: (keys: readonly string[]) => void;
  /** `retryAfter` cap, in ms, for waiters while wake-ups may be lost (half the claim window). */
  private readonly blindRetry: number;
  /** Last argument of every acquire: "<claimWindow>:<wake channel>", built once (single server). */
  private readonly waitArg: string;

  /**
   * @throws TypeError when the options are missing, ambiguous or invalid
   * @throws Error when ioredis is not installed
   */
  constructor(options: RedisLockBackendOptions) {
    this.settings = resolveRedisLockBackendOptions(options);
    const { connection, commandTimeout, channelPrefix, claimWindow } = this.settings;
    this.endpoint = redisEndpoint(connection);
    this.cluster = this.settings.cluster;
    this.scripts = this.cluster ? CLUSTER_SCRIPTS : SCRIPTS;
    if (this.cluster) this.assertKeys = (keys) => void clusterSlotOf(keys);
    let client: Redis | Cluster;
    let slotsRefreshEvery = 0;
    if (connection.kind === 'client') {
      client = connection.client;
    } else if (connection.kind === 'cluster') {
      const ClusterClass = loadIoredis('RedisLockBackend').Cluster;
      if (typeof ClusterClass !== 'function') {
        throw new Error('RedisLockBackend: the installed ioredis does not export a Cluster class');
      }
      client = new ClusterClass([...connection.nodes], ownClusterOptions(connection.options));
      slotsRefreshEvery = connection.options.slotsRefreshInterval ?? IOREDIS_SLOTS_REFRESH_INTERVAL;
    } else {
      const Redis = loadIoredis('RedisLockBackend');
      if (connection.kind === 'options') assertIoredisOptions(connection.options, Redis);
      client =
        connection.kind === 'url'
          ? new Redis(connection.url, { ...OWN_CONNECTION_OVERRIDES })
          : new Redis({
              ...(usesSentinels(connection.options) ? SENTINEL_CONNECTION_DEFAULTS : {}),
              ...connection.options,
              ...OWN_CONNECTION_OVERRIDES,
            });
    }
    this.connection = new RedisConnection(
      client,
      connection.kind !== 'client',
      commandTimeout,
      slotsRefreshEvery,
    );
    const instance = randomBytes(12).toString('hex');
    if (this.cluster) {
      const cluster = client as Cluster;
      this.wake = new RedisClusterWakeSubscriber(
        // One sharded subscriber per primary (SSUBSCRIBE goes to the slot's primary); the
        // subscriber refreshes its slot map every second (see SLOTS_REFRESH_EVERY there).
        () =>
          cluster.duplicate([], {
            ...ownClusterOptions(cluster.options),
            shardedSubscribers: true,
            lazyConnect: true,
          }),
        channelPrefix,
        instance,
        commandTimeout,
      );
    } else {
      const standalone = client as Redis;
      this.wake = new RedisWakeSubscriber(
        // The duplicate keeps the user's address, TLS and credentials (with Sentinel: the
        // sentinels and the failover detector, so it follows the primary too); it must
        // re-subscribe after a reconnect and, like our own connections, never run commands late.
        () =>
          standalone.duplicate({
            ...OWN_CONNECTION_OVERRIDES,
            autoResubscribe: true,
            lazyConnect: true,
          }),
        `${channelPrefix}${instance}`,
        commandTimeout,
      );
    }
    this.blindRetry = Math.max(1, Math.floor(claimWindow / 2));
    this.waitArg = `${claimWindow}:${this.wake.channelOf(0)}`;
  }

  /**
   * Number of waiter tokens with a wake-up listener (bounded by live waiters), for tests of
   * bounded memory. `@internal`, stripped from the published types: no public call can show it.
   * Whether wake-ups are live, in contrast, shows in `retryAfter`, and the channel in PUBSUB
   * CHANNELS under `channelPrefix`, so tests observe those instead of a getter.
   * @internal
   */
  get wakeListenerCount(): number {
    return this.wake.listenerCount;
  }

  /**
   * One `PING` within `commandTimeout`, waiting for the connection as any operation does (see
   * {@link LockBackend.ping}).
   *
   * @throws LockBackendError naming the last connection error, when there was one
   */
  async ping(): Promise<void> {
    await this.connection.run('ping', (client) => client.call('ping'));
  }

  /**
   * One atomic attempt (one script call). See {@link LockBackend.acquire}. The first attempt
   * with `queueFor > 0` also waits, once per backend, for the wake-up subscription.
   *
   * @throws LockBackendError when Redis fails or does not answer within `commandTimeout`
   */
  acquire(request: BackendAcquireRequest): Promise<BackendAcquireResult> {
    let slot = 0;
    if (this.cluster) {
      try {
        slot = clusterSlotOf(request.keys);
      } catch (error) {
        return Promise.reject(error);
      }
    }
    const queueFor = request.queueFor === undefined ? 0 : Math.max(0, Math.ceil(request.queueFor));
    // A waiter must be able to hear its wake-up before it is queued.
    const subscribing =
      queueFor > 0 ? this.wake.subscribe(slot, performance.now() + queueFor) : undefined;
    if (subscribing) return subscribing.then(() => this.attempt(request, queueFor, slot));
    return this.attempt(request, queueFor, slot);
  }

  /**
   * Extends a batch of grants in as few script calls as `maxBatchKeys` allows.
   * See {@link LockBackend.extend}.
   *
   * @throws LockBackendError when Redis fails or does not answer within `commandTimeout`
   */
  async extend(requests: readonly BackendExtendRequest[]): Promise<(boolean | Error)[]> {
    if (!this.cluster) return this.extendSlot(requests);
    // A script may touch one slot only: one batch per slot (a grant's keys share one). A slot
    // whose primary fails answers an Error for its own requests only: the others' renewals
    // count, so one shard's outage does not cost the locks of every shard.
    const bySlot = new Map<number, number[]>();
    requests.forEach((request, i) => {
      const slot = keySlot(lockHashKey(request.keys[0]));
      const indexes = bySlot.get(slot);
      if (indexes) indexes.push(i);
      else bySlot.set(slot, [i]);
    });
    const held = new Array<boolean | Error>(requests.length).fill(false);
    let failures = 0;
    let firstError: unknown;
    await Promise.all(
      [...bySlot.values()].map(async (indexes) => {
        try {
          const results = await this.extendSlot(indexes.map((i) => requests[i]));
          results.forEach((ok, j) => (held[indexes[j]] = ok));
        } catch (error) {
          failures++;
          firstError ??= error;
          const failure = error instanceof Error ? error : new Error(String(error));
          for (const i of indexes) held[i] = failure;
        }
      }),
    );
    if (failures === bySlot.size && failures > 0) throw firstError;
    return held;
  }

  /**
   * Releases the keys still owned by the token and hands each to its next waiter.
   * See {@link LockBackend.release}.
   *
   * @throws LockBackendError when Redis fails or does not answer within `commandTimeout`
   */
  async release(ref: BackendLockRef): Promise<boolean> {
    const reply = await this.connection.script(
      'release',
      this.scripts.release,
      ref.keys.length * KEYS_PER_LOCK,
      scriptArgv(ref.keys, ref.token, this.settings.claimWindow),
    );
    if (reply !== 0 && reply !== 1) throw this.badReply('release', reply);
    return reply === 1;
  }

  /**
   * Removes the token's queue entries and releases every key it holds, claimed or not, handing
   * each to its next live waiter. Idempotent. See {@link LockBackend.cancel}.
   *
   * @throws LockBackendError when Redis fails or does not answer within `commandTimeout`
   */
  async cancel(ref: BackendLockRef): Promise<void> {
    await this.connection.script(
      'cancel',
      this.scripts.cancel,
      ref.keys.length * KEYS_PER_LOCK,
      scriptArgv(ref.keys, ref.token, this.settings.claimWindow),
    );
  }

  /**
   * Reports whether `key` is held (a lock reserved for a woken waiter counts as held).
   *
   * @throws LockBackendError when Redis fails or does not answer within `commandTimeout`
   */
  async inspect(key: string): Promise<BackendLockInfo> {
    const reply = await this.connection.script('inspect', this.scripts.inspect, 1, [
      lockHashKey(key),
    ]);
    if (!Array.isArray(reply) || (reply[0] !== 0 && reply[0] !== 1)) {
      throw this.badReply('inspect', reply);
    }
    if (reply[0] === 0) return { held: false };
    const ttl = typeof reply[1] === 'number' && reply[1] >= 0 ? reply[1] : undefined;
    const fencing = typeof reply[2] === 'string' && reply[2] !== '' ? Number(reply[2]) : NaN;
    return {
      held: true,
      ...(ttl !== undefined ? { ttl } : {}),
      ...(Number.isSafeInteger(fencing) ? { fencingToken: fencing } : {}),
    };
  }

  /**
   * See {@link LockBackend.onWake}. Starts the pub/sub subscription on first use. A release that
   * hands the lock to a single-key waiter passes the {@link nestjs-distributed-lock/backend!BackendHandoff}.
   */
  onWake(token: string, listener: WakeListener): Unsubscribe {
    return this.wake.on(token, listener);
  }

  /**
   * Closes the connections this backend opened: the pub/sub connection always, the command
   * connection unless it is the user's `client`. Idempotent.
   */
  async close(): Promise<void> {
    await Promise.all([this.wake.close(), this.connection.close()]);
  }

  private async attempt(
    request: BackendAcquireRequest,
    queueFor: number,
    slot: number,
  ): Promise<BackendAcquireResult> {
    const { keys } = request;
    const reply = await this.writeScript(
      'acquire',
      this.scripts.acquire,
      keys.length * KEYS_PER_LOCK,
      scriptArgv(
        keys,
        request.token,
        Math.ceil(request.ttl),
        // A handoff can only be offered whole, so only to a single-key waiter (Redis hands each
        // key of a multi-key waiter separately).
        `${queueFor}:${keys.length === 1 && !this.settings.replicaAcks ? offerAttempt(request.attempt) : 0}`,
        this.cluster ? `${this.settings.claimWindow}:${this.wake.channelOf(slot)}` : this.waitArg,
      ),
    );
    if (typeof reply === 'number' && Number.isSafeInteger(reply) && reply !== 0) {
      if (reply > 0) {
        return {
          acquired: true,
          fencingTokens: keys.length === 1 ? [reply] : new Array<number>(keys.length).fill(reply),
        };
      }
      // Without a live subscription the wake-up of a handoff may be lost: come back before the
      // reservation lapses rather than after the holder's whole ttl.
      const retryAfter =
        queueFor > 0 && !this.wake.live(slot) ? Math.min(-reply, this.blindRetry) : -reply;
      return { acquired: false, retryAfter };
    }
    if (!isIntegerArray(reply) || reply.length !== keys.length) {
      throw this.badReply('acquire', reply);
    }
    return { acquired: true, fencingTokens: reply };
  }

  /** Extends requests of one slot (of any slot on a single server), in chunks of keys. */
  private async extendSlot(requests: readonly BackendExtendRequest[]): Promise<boolean[]> {
    // By keys, not by requests: a script's run time, during which Redis serves nobody else,
    // follows the keys it touches, and a lock may have many. A batch of locks does not bound it.
    const chunks = chunkByCost(requests, (r) => r.keys.length, this.settings.maxBatchKeys);
    const results = await Promise.all(chunks.map((c) => this.extendChunk(c)));
    return results.flat();
  }

  private async extendChunk(requests: readonly BackendExtendRequest[]): Promise<boolean[]> {
    // KEYS then ARGV in one array, built once (no spread of two halves per call).
    let keyCount = 0;
    for (const request of requests) keyCount += request.keys.length;
    const argv = new Array<string | number>(keyCount + 3 * requests.length);
    let k = 0;
    let a = keyCount;
    for (const request of requests) {
      for (const key of request.keys) argv[k++] = lockHashKey(key);
      argv[a++] = request.keys.length;
      argv[a++] = request.token;
      argv[a++] = Math.ceil(request.ttl);
    }
    const reply = await this.writeScript('extend', this.scripts.extend, keyCount, argv);
    if (!isIntegerArray(reply) || reply.length !== requests.length) {
      throw this.badReply('extend', reply);
    }
    return reply.map((held) => held === 1);
  }

  /**
   * Runs a script that may grant or extend; with `replicaAcks`, fails it when a grant or an
   * extension it made reached fewer replicas than asked.
   */
  private writeScript(
    operation: 'acquire' | 'extend',
    script: RedisScript,
    keyCount: number,
    argv: readonly (string | number)[],
  ): Promise<unknown> {
    const acks = this.settings.replicaAcks;
    // Not async: returning the script's promise from an async function would cost extra ticks.
    if (!acks) return this.connection.script(operation, script, keyCount, argv);
    return this.scriptWithAcks(operation, script, keyCount, argv, acks);
  }

  private async scriptWithAcks(
    operation: 'acquire' | 'extend',
    script: RedisScript,
    keyCount: number,
    argv: readonly (string | number)[],
    acks: RedisReplicaAcks,
  ): Promise<unknown> {
    const { reply, acked } = await this.connection.scriptWithAcks(
      operation,
      script,
      keyCount,
      argv,
      acks,
    );
    // A busy answer (a negative retry-after, or a queue entry) and an extension that found
    // nothing held promise nothing that must survive a failover.
    const wrote =
      operation === 'acquire'
        ? Array.isArray(reply) || (typeof reply === 'number' && reply > 0)
        : Array.isArray(reply) && reply.includes(1);
    if (wrote && !(typeof acked === 'number' && acked >= acks.replicas)) {
      throw new LockBackendError(
        this.name,
        operation,
        `${typeof acked === 'number' ? acked : JSON.stringify(acked)} of the ${acks.replicas} replica(s) replicaAcks asks for acknowledged the write within ${acks.timeout} ms`,
      );
    }
    return reply;
  }

  private badReply(operation: string, reply: unknown): LockBackendError {
    return new LockBackendError(
      this.name,
      operation,
      `unexpected script reply ${JSON.stringify(reply)}`,
    );
  }
}
