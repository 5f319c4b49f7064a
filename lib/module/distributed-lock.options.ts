import type {
  InjectionToken,
  ModuleMetadata,
  OptionalFactoryDependency,
  Type,
} from '@nestjs/common';
import type { LockBackend } from '../backends/lock-backend.interface';
import type { EtcdLockBackendOptions } from '../backends/etcd';
import type { MemoryLockBackendOptions } from '../backends/memory/memory.backend';
import type { RedisLockBackendOptions } from '../backends/redis';
import type { RedlockLockBackendOptions } from '../backends/redlock';

/** Selects the embedded in-memory backend (one process only). */
export interface MemoryBackendConfig extends MemoryLockBackendOptions {
  /** The in-memory backend. */
  type: 'memory';
}

/**
 * Selects Redis: `{ type: 'redis', url }`, `{ type: 'redis', sentinels, name }` (through Redis
 * Sentinel), `{ type: 'redis', cluster: nodes }` (Redis Cluster), `{ type: 'redis', client }` (an
 * ioredis `Redis` or `Cluster` you own; never closed by the module) or
 * `{ type: 'redis', options }` (ioredis options). Needs the
 * optional peer dependency `ioredis`.
 */
export type RedisBackendConfig = {
  /** The Redis backend (single node, Sentinel or Cluster). */
  type: 'redis';
} & RedisLockBackendOptions;

/**
 * Selects etcd: `{ type: 'etcd', hosts }` plus etcd3 client options, or `{ type: 'etcd', client }`
 * (an `Etcd3` you own; never closed by the module). Needs the optional peer dependency `etcd3`.
 */
export type EtcdBackendConfig = {
  /** The etcd backend. */
  type: 'etcd';
} & EtcdLockBackendOptions;

/**
 * Selects Redlock over independent Redis masters: `{ type: 'redlock', urls: [...] }` or
 * `{ type: 'redlock', clients: [...] }` (ioredis clients you own; never closed by the module), an
 * odd number of 3 or more. No fencing tokens (`lock.fencingToken` throws). Needs `ioredis`.
 */
export type RedlockBackendConfig = {
  /** The Redlock backend over independent Redis masters. */
  type: 'redlock';
} & RedlockLockBackendOptions;

/** A backend described by configuration; the module creates it and closes it at shutdown. */
export type LockBackendConfig =
  MemoryBackendConfig | RedisBackendConfig | EtcdBackendConfig | RedlockBackendConfig;

/** Options of `DistributedLockModule.forRoot` (and what `forRootAsync` factories return). */
export interface DistributedLockModuleOptions {
  /**
   * The backend: a {@link LockBackend} instance you own (never closed by the module), or a config
   * object the module turns into a backend it owns. Default `{ type: 'memory' }`.
   */
  backend?: LockBackend | LockBackendConfig;
  /** Prepended to every backend key, so locks never collide with application keys. Default `'lock:'`. */
  keyPrefix?: string;
  /** Default lock time-to-live in ms, renewed while held. Default 30000. */
  ttl?: number;
  /** Default time a caller waits for a busy lock, in ms; 0 tries once. Default 10000. */
  wait?: number;
  /** Register the module globally so every module can inject `LockService`. Default true. */
  isGlobal?: boolean;
  /**
   * How long, in ms, locked work still running at shutdown may go on. During it new acquisitions
   * are refused (`LockShutdownError`) and held locks keep being renewed; when the last one is
   * released, or the time is up, what is still held is released (its work sees `LockLostError`)
   * and the backend closes. `0` releases at once. Default 10000.
   */
  shutdownGrace?: number;
  /**
   * Check at startup that the backend answers (one bounded round trip), failing the application
   * start with a `LockBackendError` that names the backend, its host and the cause. Turn it off
   * for an app that must start while its backend is down. Default true.
   */
  checkBackend?: boolean;
  /**
   * `Retry-After` of the 409 a busy lock answers on a controller, in ms, sent as whole seconds
   * rounded up. A hint of when to try again, not the holder's remaining time. `@Locked` may set
   * its own. Default 1000.
   */
  busyRetryAfter?: number;
  /**
   * Message of the 409 a busy lock answers on a controller. The default says nothing of the lock
   * key: `'The resource is busy; try again later.'`. `@Locked` may set its own.
   */
  busyMessage?: string;
}

/** A class that produces the module options, for `forRootAsync({ useClass | useExisting })`. */
export interface DistributedLockOptionsFactory {
  /**
   * Returns the module options, or a Promise of them; called once, at bootstrap. Invalid options
   * (or a rejection) stop the application start.
   */
  createDistributedLockOptions():
    DistributedLockModuleOptions | Promise<DistributedLockModuleOptions>;
}

/** Options of `DistributedLockModule.forRootAsync`. Exactly one of `useFactory`, `useClass`, `useExisting`. */
export interface DistributedLockModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  /** Providers injected into `useFactory`. */
  inject?: (InjectionToken | OptionalFactoryDependency)[];
  /** Builds the options; may be async. */
  useFactory?: (
    ...args: never[]
  ) => DistributedLockModuleOptions | Promise<DistributedLockModuleOptions>;
  /** A class the module instantiates to build the options. */
  useClass?: Type<DistributedLockOptionsFactory>;
  /** An existing provider (from `imports`) that builds the options. */
  useExisting?: Type<DistributedLockOptionsFactory>;
  /** Register the module globally. Default true. */
  isGlobal?: boolean;
}
