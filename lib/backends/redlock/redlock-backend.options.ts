import { assertKnownOptions, optionalTtl } from '../../engine/lock-options.validator';
import {
  redisEndpoint,
  resolveRedisLockBackendOptions,
  type RedisClientLike,
  type ResolvedRedisLockBackendOptions,
} from '../redis/redis-backend.options';

/** Tuning shared by both ways of pointing {@link RedlockLockBackendOptions} at the masters. */
export interface RedlockLockBackendTuning {
  /**
   * Upper bound, in ms, of one operation on one master, including waiting for a (re)connection.
   * The masters are asked in parallel, so a call answers within about this bound even when a
   * minority of them never replies. Default 2000.
   */
  readonly commandTimeout?: number;
  /**
   * Prefix of the pub/sub channel on which this backend instance receives wake-ups (on every
   * master); a random instance id is appended. Default `distributed-lock:redlock:`.
   */
  readonly channelPrefix?: string;
}

/** Independent masters given as `redis://` / `rediss://` URLs; the backend owns the connections. */
export interface RedlockLockBackendUrlOptions extends RedlockLockBackendTuning {
  /** One URL per master: an odd number, 3 or more (5 is usual). */
  readonly urls: readonly string[];
  /** @hidden */
  readonly clients?: never;
}

/**
 * Independent masters as ioredis clients you own; the backend never closes them (it opens one
 * duplicate of each for pub/sub, which it closes on `close()`).
 */
export interface RedlockLockBackendClientOptions extends RedlockLockBackendTuning {
  /** One standalone ioredis client per master: an odd number, 3 or more (5 is usual). */
  readonly clients: readonly RedisClientLike[];
  /** @hidden */
  readonly urls?: never;
}

/** Options of {@link RedlockLockBackend}: `urls` or `clients`, plus optional tuning. */
export type RedlockLockBackendOptions =
  RedlockLockBackendUrlOptions | RedlockLockBackendClientOptions;

/**
 * Options after validation, with every default applied.
 * @internal
 */
export interface ResolvedRedlockLockBackendOptions {
  /** One per master, as the Redis backend resolves a single connection. */
  readonly masters: readonly ResolvedRedisLockBackendOptions['connection'][];
  readonly endpoints: readonly string[];
  readonly commandTimeout: number;
  readonly channelPrefix: string;
}

const DEFAULT_COMMAND_TIMEOUT = 2000;
const DEFAULT_CHANNEL_PREFIX = 'distributed-lock:redlock:';

function fail(message: string): never {
  throw new TypeError(`RedlockLockBackend: ${message}`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/**
 * Validates user options and applies defaults. Each master is checked the way the Redis backend
 * checks its one connection (URL syntax, an ioredis instance, no Cluster client).
 *
 * @throws TypeError naming the offending option
 * @internal
 */
export function resolveRedlockLockBackendOptions(
  options: unknown,
): ResolvedRedlockLockBackendOptions {
  if (!isRecord(options)) fail('options are required: pass { urls } or { clients }');
  assertKnownOptions(
    options,
    ['urls', 'clients', 'commandTimeout', 'channelPrefix'],
    'RedlockLockBackend options',
  );
  const given = (['urls', 'clients'] as const).filter((k) => options[k] !== undefined);
  if (given.length !== 1) {
    fail(
      given.length === 0
        ? 'pass { urls } (one redis:// URL per master) or { clients } (one ioredis client per master)'
        : 'pass only one of urls, clients',
    );
  }
  const name = given[0];
  const list = options[name];
  if (!Array.isArray(list)) fail(`${name} must be an array, one entry per master`);
  // Even counts add a master without adding a failure the quorum survives (4 tolerates 1, as 3).
  if (list.length < 3 || list.length % 2 === 0) {
    fail(`${name} must name an odd number of masters, 3 or more (got ${list.length})`);
  }
  const masters = list.map((entry: unknown, i) => {
    let resolved: ReturnType<typeof resolveRedisLockBackendOptions>;
    try {
      resolved = resolveRedisLockBackendOptions(
        name === 'urls' ? { url: entry } : { client: entry },
      );
    } catch (error) {
      const detail = error instanceof Error ? error.message.replace(/^RedisLockBackend: /, '') : '';
      return fail(`${name}[${i}]: ${detail}`);
    }
    if (resolved.cluster) {
      fail(`${name}[${i}] is a Redis Cluster client; Redlock needs independent standalone masters`);
    }
    return resolved.connection;
  });
  const endpoints = masters.map((m) => redisEndpoint(m));
  const duplicate = endpoints.find((e, i) => endpoints.indexOf(e) !== i && e !== 'redis client');
  if (duplicate) fail(`${name} names ${duplicate} twice: each master must be independent`);
  const channelPrefix = options.channelPrefix ?? DEFAULT_CHANNEL_PREFIX;
  if (typeof channelPrefix !== 'string') fail('channelPrefix must be a string');
  return {
    masters,
    endpoints,
    commandTimeout: optionalTtl(
      options.commandTimeout,
      'RedlockLockBackend: commandTimeout',
      DEFAULT_COMMAND_TIMEOUT,
    ),
    channelPrefix,
  };
}
