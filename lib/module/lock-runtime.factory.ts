import type { LockBackend } from '../backends/lock-backend.interface';
import { EtcdLockBackend, EtcdLockBackendOptions } from '../backends/etcd';
import { MemoryLockBackend } from '../backends/memory/memory.backend';
import { RedisLockBackend, RedisLockBackendOptions } from '../backends/redis';
import { RedlockLockBackend, RedlockLockBackendOptions } from '../backends/redlock';
import type { EngineDefaults } from '../engine/lock.engine';
import { describeValue, hasControlCharacter, hasLoneSurrogate } from '../engine/lock-key.validator';
import {
  assertKnownOptions,
  assertOptionalBoolean,
  toTtl,
  toWait,
} from '../engine/lock-options.validator';
import { BusyResponse, busyOverrides } from '../interceptors/busy.response';
import {
  DEFAULT_BUSY_MESSAGE,
  DEFAULT_BUSY_RETRY_AFTER,
  DEFAULT_KEY_PREFIX,
  DEFAULT_SHUTDOWN_GRACE,
  DEFAULT_TTL,
  DEFAULT_WAIT,
} from './distributed-lock.constants';
import type { DistributedLockModuleOptions, LockBackendConfig } from './distributed-lock.options';

/** What the module runs with once its options are resolved. */
export interface LockRuntime {
  readonly backend: LockBackend;
  /** The module created the backend, so the module closes it at shutdown. */
  readonly ownsBackend: boolean;
  readonly defaults: EngineDefaults;
  /** ms that held locks may run on at shutdown. */
  readonly shutdownGrace: number;
  /** Whether to ping the backend at startup. */
  readonly checkBackend: boolean;
  /** What a busy lock answers on a controller unless `@Locked` says otherwise. */
  readonly busy: BusyResponse;
}

const KNOWN_OPTIONS = [
  'backend',
  'keyPrefix',
  'ttl',
  'wait',
  'isGlobal',
  'shutdownGrace',
  'checkBackend',
  'busyRetryAfter',
  'busyMessage',
] as const;

/**
 * Validates the module options and creates the backend. Runs at bootstrap, so a bad option stops
 * the application with a clear message before any lock is taken.
 */
export function createLockRuntime(options: DistributedLockModuleOptions | undefined): LockRuntime {
  const prefix = 'DistributedLockModule:';
  if (options === null || (options !== undefined && typeof options !== 'object')) {
    throw new TypeError(`${prefix} options must be an object, got ${describeValue(options)}`);
  }
  const opts = options ?? {};
  assertKnownOptions(opts, KNOWN_OPTIONS, prefix);
  const ttl = toTtl(opts.ttl ?? DEFAULT_TTL, `${prefix} ttl`);
  const wait = toWait(opts.wait ?? DEFAULT_WAIT, `${prefix} wait`);
  const keyPrefix = opts.keyPrefix ?? DEFAULT_KEY_PREFIX;
  if (
    typeof keyPrefix !== 'string' ||
    keyPrefix.length > 128 ||
    hasControlCharacter(keyPrefix) ||
    hasLoneSurrogate(keyPrefix)
  ) {
    throw new TypeError(`${prefix} keyPrefix must be a printable string of at most 128 characters`);
  }
  const shutdownGrace = toWait(
    opts.shutdownGrace ?? DEFAULT_SHUTDOWN_GRACE,
    `${prefix} shutdownGrace`,
  );
  assertOptionalBoolean(opts.checkBackend, `${prefix} checkBackend`);
  assertOptionalBoolean(opts.isGlobal, `${prefix} isGlobal`);
  const busy: BusyResponse = {
    retryAfter: DEFAULT_BUSY_RETRY_AFTER,
    message: DEFAULT_BUSY_MESSAGE,
    ...busyOverrides(opts.busyRetryAfter, opts.busyMessage, prefix),
  };
  const { backend, ownsBackend } = createBackend(opts.backend ?? { type: 'memory' }, prefix);
  return {
    backend,
    ownsBackend,
    defaults: { keyPrefix, ttl, wait },
    shutdownGrace,
    checkBackend: opts.checkBackend ?? true,
    busy,
  };
}

function isBackendInstance(value: object): value is LockBackend {
  const candidate = value as Partial<Record<keyof LockBackend, unknown>>;
  return ['acquire', 'extend', 'release', 'cancel', 'inspect', 'onWake'].every(
    (method) => typeof candidate[method as keyof LockBackend] === 'function',
  );
}

function createBackend(
  backend: LockBackend | LockBackendConfig,
  prefix: string,
): { backend: LockBackend; ownsBackend: boolean } {
  if (backend === null || typeof backend !== 'object') {
    throw new TypeError(
      `${prefix} backend must be a LockBackend instance or a config object, got ${describeValue(backend)}`,
    );
  }
  if (isBackendInstance(backend)) return { backend, ownsBackend: false };
  const { type, ...rest } = backend as { type?: unknown };
  switch (type) {
    case 'memory':
      return { backend: new MemoryLockBackend(rest), ownsBackend: true };
    case 'redis':
      // The module owns the backend object; the backend itself leaves a user's `client` open.
      return { backend: new RedisLockBackend(rest as RedisLockBackendOptions), ownsBackend: true };
    case 'etcd':
      return { backend: new EtcdLockBackend(rest as EtcdLockBackendOptions), ownsBackend: true };
    case 'redlock':
      // Owned like 'redis': the backend itself leaves a user's `clients` open.
      return {
        backend: new RedlockLockBackend(rest as RedlockLockBackendOptions),
        ownsBackend: true,
      };
    default:
      throw new TypeError(
        `${prefix} unknown backend type ${describeValue(type)}; expected 'memory', 'redis', 'etcd', 'redlock' or a LockBackend instance`,
      );
  }
}
