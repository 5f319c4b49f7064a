import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis';

/** ioredis's `Redis` class, as loaded at run time. */
export type RedisConstructor = (new (...args: [string, RedisOptions] | [RedisOptions]) => Redis) & {
  /** ioredis's `Cluster` class. */
  readonly Cluster?: new (
    nodes: { host: string; port: number }[],
    options: ClusterOptions,
  ) => Cluster;
};

/**
 * Loads ioredis on first use only: it is an optional peer dependency, and importing a backend
 * must not fail for applications that use another one.
 *
 * @param backend the class named in the install hint (`RedisLockBackend`, `RedlockLockBackend`)
 * @throws Error with an install hint when ioredis is not installed
 */
export function loadIoredis(backend: string): RedisConstructor {
  let mod: { default?: unknown; Redis?: unknown };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    mod = require('ioredis') as { default?: unknown; Redis?: unknown };
  } catch (error) {
    throw new Error(`${backend} needs the ioredis package: install ioredis: npm i ioredis`, {
      cause: error,
    });
  }
  const ctor = mod.Redis ?? mod.default ?? mod;
  if (typeof ctor !== 'function') {
    throw new Error(`${backend}: the installed ioredis does not export a Redis class`);
  }
  return ctor as RedisConstructor;
}

/**
 * Settings forced on connections a backend opens, so an outage fails fast and leaves no trace.
 * ioredis's own `commandTimeout` stays off: it arms a timer per command, while RedisConnection
 * bounds every operation with one watchdog per connection.
 */
export const OWN_CONNECTION_OVERRIDES: RedisOptions = {
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
  commandTimeout: undefined,
  // On close, a socket whose peer is gone (or whose stream died while reconnecting) is
  // destroyed after this many ms instead of ioredis's default 2 s, which keeps the process alive.
  disconnectTimeout: 200,
};
