import type { ConnectionOptions } from 'node:tls';
import { assertKnownOptions, optionalTtl } from '../../engine/lock-options.validator';
import type { Redis, RedisOptions } from 'ioredis';

/**
 * What the backend needs of an ioredis client, declared here so that the published types compile
 * without ioredis installed: a standalone `Redis` instance of ioredis 5 or 6 fits as it is.
 */
export interface RedisClientLike {
  readonly status: string;
  call(command: string, args: (string | number)[]): Promise<unknown>;
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
  readonly host?: string;
  readonly port?: number;
  /** A Unix socket, instead of host and port. */
  readonly path?: string;
  readonly username?: string;
  readonly password?: string;
  readonly db?: number;
  readonly tls?: ConnectionOptions;
  /** Sentinel: the master group name. */
  readonly name?: string;
  readonly sentinels?: readonly { readonly host?: string; readonly port?: number }[];
  readonly connectTimeout?: number;
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
}

/** Connect with a `redis://` or `rediss://` URL; the backend owns the connection. */
export interface RedisLockBackendUrlOptions extends RedisLockBackendTuning {
  /** Such as `redis://user:password@127.0.0.1:6379/0`, or `rediss://` for TLS. */
  readonly url: string;
  readonly client?: never;
  readonly options?: never;
}

/**
 * Use an ioredis client you own. The backend never closes it; it opens one duplicate of it for
 * pub/sub, which it closes on `close()`.
 */
export interface RedisLockBackendClientOptions extends RedisLockBackendTuning {
  /** A standalone ioredis client, 5 or 6 (Redis Cluster clients are not supported yet). */
  readonly client: RedisClientLike;
  readonly url?: never;
  readonly options?: never;
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
  readonly url?: never;
  readonly client?: never;
}

/**
 * Options of {@link RedisLockBackend}: exactly one of `url`, `client` or `options`, plus optional
 * tuning.
 */
export type RedisLockBackendOptions =
  RedisLockBackendUrlOptions | RedisLockBackendClientOptions | RedisLockBackendConnectionOptions;

/**
 * Options after validation, with every default applied.
 * @internal
 */
export interface ResolvedRedisLockBackendOptions {
  readonly connection:
    | { readonly kind: 'url'; readonly url: string }
    | { readonly kind: 'client'; readonly client: Redis }
    | { readonly kind: 'options'; readonly options: RedisOptions };
  readonly commandTimeout: number;
  readonly claimWindow: number;
  readonly channelPrefix: string;
  readonly maxBatchKeys: number;
}

const DEFAULT_COMMAND_TIMEOUT = 2000;
const DEFAULT_CLAIM_WINDOW = 2000;
const DEFAULT_CHANNEL_PREFIX = 'distributed-lock:wake:';
const DEFAULT_MAX_BATCH_KEYS = 1000;

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

function looksLikeClient(value: unknown): value is Redis {
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
    ['url', 'client', 'options', 'commandTimeout', 'claimWindow', 'channelPrefix', 'maxBatchKeys'],
    'RedisLockBackend options',
  );
  const given = (['url', 'client', 'options'] as const).filter((k) => options[k] !== undefined);
  if (given.length !== 1) {
    fail(
      given.length === 0
        ? 'pass one of { url }, { client } (an ioredis instance) or { options } (ioredis options)'
        : `pass only one of url, client, options (got ${given.join(', ')})`,
    );
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
    if ((options.client as { isCluster?: unknown }).isCluster === true) {
      fail('Redis Cluster clients are not supported yet; pass a standalone ioredis client');
    }
    connection = { kind: 'client', client: options.client };
  } else {
    if (!isRecord(options.options) || Array.isArray(options.options)) {
      fail('options must be an object of ioredis options (host, port, tls, password, db...)');
    }
    // The names are checked once ioredis is loaded (assertIoredisOptions); ioredis checks values.
    connection = { kind: 'options', options: options.options as RedisOptions };
  }
  const channelPrefix = options.channelPrefix ?? DEFAULT_CHANNEL_PREFIX;
  if (typeof channelPrefix !== 'string') fail('channelPrefix must be a string');
  return {
    connection,
    commandTimeout: optionalTtl(
      options.commandTimeout,
      'RedisLockBackend: commandTimeout',
      DEFAULT_COMMAND_TIMEOUT,
    ),
    claimWindow: optionalTtl(
      options.claimWindow,
      'RedisLockBackend: claimWindow',
      DEFAULT_CLAIM_WINDOW,
    ),
    channelPrefix,
    maxBatchKeys: positiveInteger(options.maxBatchKeys, 'maxBatchKeys', DEFAULT_MAX_BATCH_KEYS),
  };
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
 * Where a connection goes, for messages: `host:port`, a socket path or the sentinels; never
 * credentials.
 * @internal
 */
export function redisEndpoint(connection: ResolvedRedisLockBackendOptions['connection']): string {
  if (connection.kind === 'url') {
    const url = new URL(connection.url);
    return `${url.hostname || 'localhost'}:${url.port || 6379}`;
  }
  const options: RedisOptions | undefined =
    connection.kind === 'client' ? connection.client.options : connection.options;
  if (!options) return 'redis client';
  const sentinels = options.sentinels ?? [];
  if (sentinels.length > 0) {
    const list = sentinels.map((s) => `${s.host ?? 'localhost'}:${s.port ?? 26379}`).join(', ');
    return `sentinels ${list} (master ${options.name ?? 'mymaster'})`;
  }
  return options.path ?? `${options.host ?? 'localhost'}:${options.port ?? 6379}`;
}
