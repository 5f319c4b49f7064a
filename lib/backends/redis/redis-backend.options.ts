import type { ConnectionOptions } from 'node:tls';
import { assertKnownOptions, optionalTtl, toTtl } from '../../engine/lock-options.validator';
import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis';

/**
 * What the backend needs of an ioredis client, declared here so that the published types compile
 * without ioredis installed: a standalone `Redis` instance of ioredis 5 or 6 fits as it is.
 */
export interface RedisClientLike {
  /** ioredis's connection status; commands are sent only while it is `ready`. */
  readonly status: string;
  /** Sends one command (ioredis's `call`); rejects with the client's error. */
  call(command: string, args: (string | number)[]): Promise<unknown>;
  /** A new connection with the same options, for pub/sub; the backend closes it. */
  duplicate(override?: object): RedisClientLike;
}

/**
 * The option names of ioredis 5's `RedisOptions`. At run time the names of the installed
 * ioredis's `Redis.defaultOptions` count too, so a newer ioredis's options with a default pass.
 */
const IOREDIS_OPTION_NAMES = [
  ...['host', 'port', 'path', 'family', 'tls', 'Connector', 'connectTimeout', 'socketTimeout'],
  ...['disconnectTimeout', 'keepAlive', 'noDelay', 'username', 'password', 'db'],
  ...['connectionName', 'disableClientInfo', 'clientInfoTag', 'sentinels', 'name', 'role'],
  ...['sentinelUsername', 'sentinelPassword', 'sentinelRetryStrategy', 'sentinelTLS'],
  ...['sentinelReconnectStrategy', 'preferredSlaves', 'sentinelCommandTimeout', 'natMap'],
  ...['enableTLSForSentinelMode', 'updateSentinels', 'sentinelMaxConnections'],
  ...['failoverDetector', 'retryStrategy', 'reconnectOnError', 'commandTimeout'],
  ...['blockingTimeout', 'blockingTimeoutGrace', 'maxRetriesPerRequest', 'maxLoadingRetryTime'],
  ...['enableOfflineQueue', 'offlineQueue', 'commandQueue', 'enableReadyCheck', 'lazyConnect'],
  ...['autoResubscribe', 'autoResendUnfulfilledCommands', 'keyPrefix', 'readOnly', 'monitor'],
  ...['stringNumbers', 'enableAutoPipelining', 'autoPipeliningIgnoredCommands', 'scripts'],
  'showFriendlyErrorStack',
] as const;

/**
 * ioredis's connection options (its `RedisOptions`), declared here so that the published types
 * compile without ioredis installed; the values go to ioredis unchanged. The common ones are
 * typed, the others (`retryStrategy`, `sentinelTLS`, ...) take what ioredis documents.
 */
export interface RedisConnectionOptions extends Partial<
  Readonly<Record<(typeof IOREDIS_OPTION_NAMES)[number], unknown>>
> {
  /** Server host name or address. ioredis's default: `localhost`. */
  readonly host?: string;
  /** Server port. ioredis's default: 6379. */
  readonly port?: number;
  /** A Unix socket, instead of host and port. */
  readonly path?: string;
  /** ACL user name (Redis 6 or later). */
  readonly username?: string;
  /** Password (`AUTH`). */
  readonly password?: string;
  /** Database index. ioredis's default: 0. */
  readonly db?: number;
  /** TLS options (Node's `tls.connect`); `{}` turns TLS on with the defaults. */
  readonly tls?: ConnectionOptions;
  /** Sentinel: the master group name. */
  readonly name?: string;
  /** Sentinel: the sentinels to ask for the primary of `name`. */
  readonly sentinels?: readonly {
    /** Sentinel host. ioredis's default: `localhost`. */
    readonly host?: string;
    /** Sentinel port. ioredis's default: 26379. */
    readonly port?: number;
  }[];
  /** How long, in ms, ioredis waits for a connection before it retries. ioredis's default: 10000. */
  readonly connectTimeout?: number;
  /** Name of the connection in `CLIENT LIST` (`CLIENT SETNAME`). */
  readonly connectionName?: string;
}

/** Tuning shared by every way of pointing {@link RedisLockBackendOptions} at a server. */
export interface RedisLockBackendTuning {
  /**
   * Upper bound, in ms, of one backend operation, including waiting for a (re)connection. Past
   * it the operation rejects with `LockBackendError` instead of hanging. Default 2000.
   */
  readonly commandTimeout?: number;
  /**
   * How long, in ms, a lock handed to the oldest queued waiter on release stays reserved for it
   * before that waiter claims it with its own ttl. Bounds how long a waiter that vanished can
   * block the queue. Never more than the waiter's ttl. Default 2000.
   */
  readonly claimWindow?: number;
  /**
   * Prefix of the pub/sub channel on which this backend instance receives wake-ups; a random
   * instance id is appended. Default `distributed-lock:wake:`.
   */
  readonly channelPrefix?: string;
  /**
   * Most lock keys one extend script call covers; a larger renewal batch is split into several
   * calls so that no single script blocks Redis for long (a script runs alone on the server, and
   * its cost follows keys, not locks: one lock may have many keys). Default 1000.
   */
  readonly maxBatchKeys?: number;
  /**
   * Opt-in replica acknowledgement, as Redisson offers: after every grant and every extension
   * the backend sends `WAIT replicas timeout` on the same connection, right behind the script
   * (pipelined: no extra round trip), and fails the operation with `LockBackendError` when fewer
   * than `replicas` replicas confirmed the write within `timeout` ms. A grant that fails so is
   * never returned (the engine cancels it), and an extension that fails so counts as a failed
   * renewal (retried until the lock's validity ends, then `LockLostError`). A busy answer is
   * not failed. A waiter a release hands the lock to claims it with one more acquire (which
   * waits too), instead of taking it straight from the wake-up message. Releases do not wait: a
   * release lost in a failover leaves the lock held until its ttl, which is safe.
   *
   * This narrows, but does not close, the window in which a failover loses a grant: `WAIT` does
   * not make Redis replication synchronous (a replica promoted before it applied the write, or a
   * write acknowledged and then lost with the replica, still loses it). While fewer replicas than
   * `replicas` are up, every acquisition fails. `WAIT` blocks the connection until it answers,
   * so operations of one backend queue behind it: expect about one replica round trip per grant
   * and extension. Off by default.
   */
  readonly replicaAcks?: RedisReplicaAcks;
}

/** See {@link RedisLockBackendTuning.replicaAcks}. */
export interface RedisReplicaAcks {
  /** How many replicas must confirm each grant and extension; a positive integer. */
  readonly replicas: number;
  /** How long, in ms, to wait for them; positive, and less than `commandTimeout`. */
  readonly timeout: number;
}

/** Connect with a `redis://` or `rediss://` URL; the backend owns the connection. */
export interface RedisLockBackendUrlOptions extends RedisLockBackendTuning {
  /** Such as `redis://user:password@127.0.0.1:6379/0`, or `rediss://` for TLS. */
  readonly url: string;
  /** @hidden */
  readonly client?: never;
  /** @hidden */
  readonly options?: never;
  /** @hidden */
  readonly sentinels?: never;
  /** @hidden */
  readonly cluster?: never;
}

/**
 * Use an ioredis client you own. The backend never closes it; it opens one duplicate of it for
 * pub/sub, which it closes on `close()`.
 */
export interface RedisLockBackendClientOptions extends RedisLockBackendTuning {
  /**
   * An ioredis client, 5 or 6: a standalone `Redis`, or a `Cluster` (Redis 7 or later; see
   * {@link RedisLockBackendClusterOptions}). One configured for Sentinel works, and the backend's duplicate follows the primary with it; give
   * it `failoverDetector: true` so that it leaves a primary that froze (the `sentinels` form
   * does that itself), and close it with `disconnect()`, which also ends the detector's sentinel
   * connections (ioredis's `quit()` leaves them open).
   */
  readonly client: RedisClientLike;
  /** @hidden */
  readonly url?: never;
  /** @hidden */
  readonly options?: never;
  /** @hidden */
  readonly sentinels?: never;
  /** @hidden */
  readonly cluster?: never;
}

/** Connect with ioredis options (host, port, TLS, username, password, db...); the backend owns it. */
export interface RedisLockBackendConnectionOptions extends RedisLockBackendTuning {
  /**
   * Passed to `new Redis(options)`. The backend forces `enableOfflineQueue: false`,
   * `autoResendUnfulfilledCommands: false` and a short `disconnectTimeout`, so that a command
   * during an outage fails fast instead of running late, and turns ioredis's own `commandTimeout`
   * off (the backend bounds every operation by its `commandTimeout` itself, without a timer per
   * command). Auto-reconnect stays on.
   */
  readonly options: RedisConnectionOptions;
  /** @hidden */
  readonly url?: never;
  /** @hidden */
  readonly client?: never;
  /** @hidden */
  readonly sentinels?: never;
  /** @hidden */
  readonly cluster?: never;
}

/** One sentinel of a {@link RedisLockBackendSentinelOptions}. */
export interface RedisSentinelAddress {
  /** Host name or address of the sentinel. */
  readonly host: string;
  /** Default 26379. */
  readonly port?: number;
}

/**
 * Connect through Redis Sentinel; the backend owns the connections. It asks the sentinels for
 * the primary of `name`, and follows the primary across a failover: its connections (commands
 * and wake-ups) listen to the sentinels' `+switch-master` announcements (ioredis's
 * `failoverDetector`), so a primary that froze is left as soon as the sentinels replace it, and
 * a node that answers `READONLY` (a demoted primary) makes them reconnect through the sentinels.
 * For any other ioredis Sentinel setting, pass `{ options: { sentinels, name, ... } }`, which
 * gets the same defaults.
 */
export interface RedisLockBackendSentinelOptions extends RedisLockBackendTuning {
  /** At least one sentinel; ioredis also learns the others from them. */
  readonly sentinels: readonly RedisSentinelAddress[];
  /** The master group name, as in `sentinel monitor <name> ...`. */
  readonly name: string;
  /** ACL user name on the data nodes (primary and replicas). */
  readonly username?: string;
  /** Password of the data nodes. */
  readonly password?: string;
  /** Database index on the data nodes. Default 0. */
  readonly db?: number;
  /** TLS to the data nodes. */
  readonly tls?: ConnectionOptions;
  /** ACL user name on the sentinels themselves, when they need one. */
  readonly sentinelUsername?: string;
  /** Password of the sentinels themselves, when they need one. */
  readonly sentinelPassword?: string;
  /** TLS to the sentinels themselves. */
  readonly sentinelTLS?: ConnectionOptions;
  /** @hidden */
  readonly url?: never;
  /** @hidden */
  readonly client?: never;
  /** @hidden */
  readonly options?: never;
  /** @hidden */
  readonly cluster?: never;
}

/** One node of a {@link RedisLockBackendClusterOptions}. */
export interface RedisClusterNode {
  /** Host name or address of the node. */
  readonly host: string;
  /** Default 6379. */
  readonly port?: number;
}

/**
 * ioredis's `ClusterOptions`, declared here so that the published types compile without ioredis
 * installed; the values go to ioredis unchanged. `redisOptions` are the options of every node
 * connection (credentials, TLS...).
 */
export interface RedisClusterConnectionOptions {
  /** Options of every node connection: credentials, TLS... */
  readonly redisOptions?: RedisConnectionOptions;
  /** ioredis's `natMap`: addresses the nodes announce, mapped to where to reach them. */
  readonly natMap?: unknown;
  /** ioredis's `dnsLookup`: resolves node host names. ioredis's default: `dns.lookup`. */
  readonly dnsLookup?: unknown;
  /** Timeout, in ms, of a slot map refresh. ioredis's default: 1000. */
  readonly slotsRefreshTimeout?: number;
  /** Time, in ms, between automatic slot map refreshes. ioredis's default: 5000. */
  readonly slotsRefreshInterval?: number;
  /** Any other ioredis `ClusterOptions`; a near miss of a known name is refused. */
  readonly [option: string]: unknown;
}

/**
 * Connect to a Redis Cluster (Redis 7 or later: wake-ups use sharded pub/sub); the backend owns
 * the connections. Every lock's keys live in one hash slot: a multi-key lock whose keys fall in
 * several slots is refused with a `TypeError` before anything is sent (give its keys a common
 * start ending in `}`, such as `order:{42}:items` and `order:{42}:payment`). Renewals are batched
 * per slot. While a slot migrates, its locks' scripts are refused by Redis (TRYAGAIN) and sent
 * again within `commandTimeout`; a failover can lose a grant that was not yet replicated, as
 * with Sentinel. `replicaAcks` is not available on Cluster.
 */
export interface RedisLockBackendClusterOptions extends RedisLockBackendTuning {
  /** At least one node of the cluster; ioredis learns the others from it. */
  readonly cluster: readonly RedisClusterNode[];
  /**
   * Passed to ioredis's `new Cluster(nodes, clusterOptions)`, except `slotsRefreshInterval`
   * (ms, default 5000 as in ioredis, 0: never), which the backend runs with a timer of its own
   * that stops at close: ioredis's own could re-arm itself after a close and keep the process
   * alive.
   */
  readonly clusterOptions?: RedisClusterConnectionOptions;
  /** @hidden */
  readonly url?: never;
  /** @hidden */
  readonly client?: never;
  /** @hidden */
  readonly options?: never;
  /** @hidden */
  readonly sentinels?: never;
}

/**
 * Options of {@link RedisLockBackend}: exactly one of `url`, `client`, `options`, `sentinels`
 * (with `name`) or `cluster`, plus optional tuning.
 */
export type RedisLockBackendOptions =
  | RedisLockBackendUrlOptions
  | RedisLockBackendClientOptions
  | RedisLockBackendConnectionOptions
  | RedisLockBackendSentinelOptions
  | RedisLockBackendClusterOptions;

/**
 * Options after validation, with every default applied.
 * @internal
 */
export interface ResolvedRedisLockBackendOptions {
  readonly connection:
    | { readonly kind: 'url'; readonly url: string }
    | { readonly kind: 'client'; readonly client: Redis | Cluster }
    | { readonly kind: 'options'; readonly options: RedisOptions }
    | {
        readonly kind: 'cluster';
        readonly nodes: readonly { host: string; port: number }[];
        readonly options: ClusterOptions;
      };
  /** Whether the connection is to a Redis Cluster. */
  readonly cluster: boolean;
  readonly commandTimeout: number;
  readonly claimWindow: number;
  readonly channelPrefix: string;
  readonly maxBatchKeys: number;
  readonly replicaAcks: RedisReplicaAcks | undefined;
}

const DEFAULT_COMMAND_TIMEOUT = 2000;
const DEFAULT_CLAIM_WINDOW = 2000;
const DEFAULT_CHANNEL_PREFIX = 'distributed-lock:wake:';
const DEFAULT_MAX_BATCH_KEYS = 1000;
const FORMS = ['url', 'client', 'options', 'sentinels', 'cluster'] as const;
const TUNING_OPTIONS = [
  'commandTimeout',
  'claimWindow',
  'channelPrefix',
  'maxBatchKeys',
  'replicaAcks',
] as const;
/** Options of the Sentinel form besides `sentinels`. */
const SENTINEL_OPTIONS = [
  ...['name', 'username', 'password', 'db', 'tls', 'sentinelUsername', 'sentinelPassword'],
  'sentinelTLS',
] as const;

function fail(message: string): never {
  throw new TypeError(`RedisLockBackend: ${message}`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function positiveInteger(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    fail(`${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

function looksLikeClient(value: unknown): value is Redis | Cluster {
  return (
    isRecord(value) &&
    typeof value.call === 'function' &&
    typeof value.duplicate === 'function' &&
    typeof value.status === 'string'
  );
}

/**
 * Validates user options and applies defaults.
 *
 * @throws TypeError naming the offending option when the options are missing, ambiguous or invalid
 * @internal
 */
export function resolveRedisLockBackendOptions(options: unknown): ResolvedRedisLockBackendOptions {
  if (!isRecord(options)) {
    fail('options are required: pass { url }, { client } or { options }');
  }
  assertKnownOptions(
    options,
    [...FORMS, ...TUNING_OPTIONS, ...SENTINEL_OPTIONS, 'clusterOptions'],
    'RedisLockBackend options',
  );
  const given = FORMS.filter((k) => options[k] !== undefined);
  if (given.length !== 1) {
    fail(
      given.length === 0
        ? 'pass one of { url }, { client } (an ioredis instance), { options } (ioredis options), { sentinels, name } or { cluster }'
        : `pass only one of url, client, options, sentinels, cluster (got ${given.join(', ')})`,
    );
  }
  if (given[0] !== 'sentinels') {
    const stray = SENTINEL_OPTIONS.find((k) => options[k] !== undefined);
    if (stray) {
      fail(`${stray} belongs to the Sentinel form { sentinels, name }; with ${given[0]}, drop it`);
    }
  }
  if (given[0] !== 'cluster' && options.clusterOptions !== undefined) {
    fail(`clusterOptions belongs to the Cluster form { cluster }; with ${given[0]}, drop it`);
  }
  let connection: ResolvedRedisLockBackendOptions['connection'];
  if (given[0] === 'url') {
    const url = options.url;
    if (typeof url !== 'string' || !/^rediss?:\/\/./i.test(url)) {
      fail('url must be a string starting with redis:// or rediss://');
    }
    try {
      new URL(url);
    } catch {
      fail(`url is not a valid URL: ${url}`);
    }
    connection = { kind: 'url', url };
  } else if (given[0] === 'client') {
    if (!looksLikeClient(options.client)) {
      fail('client must be an ioredis Redis instance (npm i ioredis)');
    }
    connection = { kind: 'client', client: options.client };
  } else if (given[0] === 'sentinels') {
    connection = { kind: 'options', options: sentinelConnection(options) };
  } else if (given[0] === 'cluster') {
    connection = clusterConnection(options);
  } else {
    if (!isRecord(options.options) || Array.isArray(options.options)) {
      fail('options must be an object of ioredis options (host, port, tls, password, db...)');
    }
    // The names are checked once ioredis is loaded (assertIoredisOptions); ioredis checks values.
    connection = { kind: 'options', options: options.options as RedisOptions };
  }
  const cluster =
    connection.kind === 'cluster' ||
    (connection.kind === 'client' &&
      (connection.client as { isCluster?: unknown }).isCluster === true);
  const channelPrefix = options.channelPrefix ?? DEFAULT_CHANNEL_PREFIX;
  if (typeof channelPrefix !== 'string') fail('channelPrefix must be a string');
  if (cluster && /[{}]/.test(channelPrefix)) {
    fail(
      `channelPrefix must not contain "{" or "}" on Redis Cluster, where the backend sets each channel's hash tag (got ${JSON.stringify(channelPrefix)})`,
    );
  }
  if (cluster && options.replicaAcks !== undefined) {
    fail('replicaAcks is not available on Redis Cluster; drop it');
  }
  if (cluster && clusterKeyPrefix(connection) !== undefined) {
    // ioredis prefixes shard channels like keys, but not the channel a script is given: every
    // waiter would look dead. The module's keyPrefix prefixes lock keys without that problem.
    fail(
      'an ioredis keyPrefix is not supported on Redis Cluster (it breaks wake-ups); use the module option keyPrefix instead',
    );
  }
  const commandTimeout = optionalTtl(
    options.commandTimeout,
    'RedisLockBackend: commandTimeout',
    DEFAULT_COMMAND_TIMEOUT,
  );
  return {
    connection,
    cluster,
    commandTimeout,
    claimWindow: optionalTtl(
      options.claimWindow,
      'RedisLockBackend: claimWindow',
      DEFAULT_CLAIM_WINDOW,
    ),
    channelPrefix,
    maxBatchKeys: positiveInteger(options.maxBatchKeys, 'maxBatchKeys', DEFAULT_MAX_BATCH_KEYS),
    replicaAcks: replicaAcks(options.replicaAcks, commandTimeout),
  };
}

function replicaAcks(value: unknown, commandTimeout: number): RedisReplicaAcks | undefined {
  if (value === undefined) return undefined;
  if (!isRecord(value) || Array.isArray(value)) {
    fail('replicaAcks must be an object { replicas, timeout }');
  }
  assertKnownOptions(value, ['replicas', 'timeout'], 'RedisLockBackend replicaAcks');
  if (value.replicas === undefined || value.timeout === undefined) {
    fail('replicaAcks needs both replicas (a count) and timeout (ms)');
  }
  const replicas = positiveInteger(value.replicas, 'replicaAcks.replicas', 1);
  // WAIT 0 would block until the replicas answer, however long: a timeout is required.
  const timeout = toTtl(value.timeout, 'RedisLockBackend: replicaAcks.timeout');
  if (timeout >= commandTimeout) {
    fail(
      `replicaAcks.timeout (${timeout} ms) must be less than commandTimeout (${commandTimeout} ms), which bounds the whole operation`,
    );
  }
  return { replicas, timeout };
}

function optionalString(options: Record<string, unknown>, name: string): void {
  const value = options[name];
  if (value !== undefined && (typeof value !== 'string' || value === '')) {
    fail(`${name} must be a non-empty string`);
  }
}

/** Checks a list of `{ host, port }` (sentinels, cluster nodes); returns copies. */
function addresses(value: unknown, name: string): { host: string; port?: number }[] {
  if (!Array.isArray(value) || value.length === 0) {
    fail(`${name} must be a non-empty array of { host, port }`);
  }
  return value.map((address: unknown, i) => {
    if (!isRecord(address) || Array.isArray(address)) {
      fail(`${name}[${i}] must be an object { host, port }`);
    }
    assertKnownOptions(address, ['host', 'port'], `RedisLockBackend ${name}[${i}]`);
    if (typeof address.host !== 'string' || address.host === '') {
      fail(`${name}[${i}].host must be a non-empty string`);
    }
    const port = address.port;
    if (
      port !== undefined &&
      (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535)
    ) {
      fail(`${name}[${i}].port must be an integer in 1..65535, got ${String(port)}`);
    }
    return port === undefined ? { host: address.host } : { host: address.host, port };
  });
}

/** ioredis options of the Sentinel form, checked. */
function sentinelConnection(options: Record<string, unknown>): RedisOptions {
  const sentinels = addresses(options.sentinels, 'sentinels');
  if (typeof options.name !== 'string' || options.name === '') {
    fail('name (the master group name the sentinels monitor) must be a non-empty string');
  }
  for (const name of ['username', 'password', 'sentinelUsername', 'sentinelPassword']) {
    optionalString(options, name);
  }
  const db = options.db;
  if (db !== undefined && (typeof db !== 'number' || !Number.isSafeInteger(db) || db < 0)) {
    fail(`db must be a non-negative integer, got ${String(db)}`);
  }
  for (const name of ['tls', 'sentinelTLS']) {
    const value = options[name];
    if (value !== undefined && (!isRecord(value) || Array.isArray(value))) {
      fail(`${name} must be an object of TLS options`);
    }
  }
  const picked: Record<string, unknown> = {};
  for (const name of SENTINEL_OPTIONS) {
    if (options[name] !== undefined) picked[name] = options[name];
  }
  picked.sentinels = sentinels;
  return picked as RedisOptions;
}

/** The ioredis `keyPrefix` of a Cluster connection, at either level, if any. */
function clusterKeyPrefix(connection: ResolvedRedisLockBackendOptions['connection']): unknown {
  const options =
    connection.kind === 'cluster'
      ? connection.options
      : connection.kind === 'client'
        ? (connection.client as Cluster).options
        : undefined;
  const prefix = options?.keyPrefix ?? options?.redisOptions?.keyPrefix;
  return prefix === '' ? undefined : prefix;
}

/**
 * The option names of ioredis 5's `ClusterOptions`; near misses of them are refused (see
 * {@link assertIoredisOptions} for why only near misses).
 */
const IOREDIS_CLUSTER_OPTION_NAMES = [
  ...['clusterRetryStrategy', 'enableOfflineQueue', 'enableReadyCheck', 'scaleReads'],
  ...['maxRedirections', 'retryDelayOnFailover', 'retryDelayOnClusterDown', 'retryDelayOnTryAgain'],
  ...['retryDelayOnMoved', 'slotsRefreshTimeout', 'slotsRefreshInterval', 'useSRVRecords'],
  ...['resolveSrv', 'redisOptions', 'lazyConnect', 'scripts', 'dnsLookup', 'natMap'],
  ...['enableAutoPipelining', 'autoPipeliningIgnoredCommands', 'shardedSubscribers', 'keyPrefix'],
  ...['showFriendlyErrorStack', 'disconnectTimeout'],
] as const;

/** The Cluster form, checked. ioredis checks the values of `clusterOptions`. */
function clusterConnection(
  options: Record<string, unknown>,
): ResolvedRedisLockBackendOptions['connection'] {
  const nodes = addresses(options.cluster, 'cluster').map((n) => ({
    host: n.host,
    port: n.port ?? 6379,
  }));
  const clusterOptions = options.clusterOptions ?? {};
  if (!isRecord(clusterOptions) || Array.isArray(clusterOptions)) {
    fail('clusterOptions must be an object of ioredis Cluster options');
  }
  assertKnownOptions(
    clusterOptions,
    IOREDIS_CLUSTER_OPTION_NAMES,
    'RedisLockBackend clusterOptions (ioredis Cluster options)',
    true,
  );
  const redisOptions = clusterOptions.redisOptions;
  if (redisOptions !== undefined && (!isRecord(redisOptions) || Array.isArray(redisOptions))) {
    fail('clusterOptions.redisOptions must be an object of ioredis options');
  }
  if (redisOptions !== undefined) {
    assertKnownOptions(
      redisOptions,
      IOREDIS_OPTION_NAMES,
      'RedisLockBackend clusterOptions.redisOptions (ioredis options)',
      true,
    );
  }
  return { kind: 'cluster', nodes, options: clusterOptions as ClusterOptions };
}

/**
 * Defaults of a connection through Sentinel, under the user's ioredis options: what makes it
 * follow the primary. Without the failover detector, a connection to a primary that froze (no
 * FIN, no RST) would stay on it after the sentinels promoted another; a demoted primary answers
 * writes with READONLY, upon which the connection goes back to the sentinels (the command itself
 * still fails: it is never resent late). A sentinel that froze costs one second, not forever.
 * @internal
 */
export const SENTINEL_CONNECTION_DEFAULTS: RedisOptions = {
  failoverDetector: true,
  // Anywhere in the message: before Redis 7 a script's write failed as "ERR Error running script ... -READONLY".
  reconnectOnError: (error: Error) => error.message.includes('READONLY'),
  sentinelCommandTimeout: 1000,
};

/** Whether ioredis options connect through Sentinel. @internal */
export function usesSentinels(options: RedisOptions | undefined): boolean {
  return Array.isArray(options?.sentinels) && options.sentinels.length > 0;
}

/**
 * Rejects a misspelled ioredis option name (ioredis would ignore it), suggesting the known one.
 * Only near misses: a name far from every known one may be an option of a newer ioredis (the
 * peer range includes 6), and refusing it would block a valid configuration.
 * @internal
 */
export function assertIoredisOptions(options: RedisOptions, ioredis: unknown): void {
  const defaults = (ioredis as { defaultOptions?: unknown }).defaultOptions;
  const known = typeof defaults === 'object' && defaults !== null ? Object.keys(defaults) : [];
  assertKnownOptions(
    options,
    [...new Set([...IOREDIS_OPTION_NAMES, ...known])],
    'RedisLockBackend `options` (ioredis options)',
    true,
  );
}

/**
 * `host:port` of an ioredis Cluster startup node (an object, a port, `host:port` or a URL),
 * never its credentials.
 */
function startupNodeAddress(node: unknown): string {
  if (typeof node === 'number') return `localhost:${node}`;
  if (typeof node === 'string') {
    if (/^\d+$/.test(node)) return `localhost:${node}`;
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(node)) {
      try {
        const url = new URL(node);
        return `${url.hostname || 'localhost'}:${url.port || 6379}`;
      } catch {
        return 'a startup node URL';
      }
    }
    return node.slice(node.lastIndexOf('@') + 1);
  }
  if (isRecord(node)) {
    return `${typeof node.host === 'string' ? node.host : 'localhost'}:${typeof node.port === 'number' ? node.port : 6379}`;
  }
  return 'a startup node';
}

/**
 * Where a connection goes, for messages: `host:port`, a socket path or the sentinels; never
 * credentials.
 * @internal
 */
export function redisEndpoint(connection: ResolvedRedisLockBackendOptions['connection']): string {
  const nodes =
    connection.kind === 'cluster'
      ? connection.nodes
      : connection.kind === 'client' && (connection.client as Cluster).isCluster
        ? (connection.client as unknown as { startupNodes?: unknown }).startupNodes
        : undefined;
  if (nodes !== undefined) {
    const list = Array.isArray(nodes)
      ? nodes.map((n: unknown) => startupNodeAddress(n)).join(', ')
      : 'startup nodes unknown';
    return `cluster ${list}`;
  }
  if (connection.kind === 'url') {
    const url = new URL(connection.url);
    return `${url.hostname || 'localhost'}:${url.port || 6379}`;
  }
  const options: RedisOptions | undefined =
    connection.kind === 'client' ? (connection.client as Redis).options : connection.options;
  if (!options) return 'redis client';
  const sentinels = options.sentinels ?? [];
  if (sentinels.length > 0) {
    const list = sentinels.map((s) => `${s.host ?? 'localhost'}:${s.port ?? 26379}`).join(', ');
    return `sentinels ${list} (master ${options.name ?? 'mymaster'})`;
  }
  return options.path ?? `${options.host ?? 'localhost'}:${options.port ?? 6379}`;
}
