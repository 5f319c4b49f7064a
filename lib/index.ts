/**
 * The public API: what applications may rely on. Everything else under lib/ is internal, and the
 * package's `exports` map keeps it out of reach. The contract for writing a backend is the
 * separate entry point `nestjs-distributed-lock/backend` (lib/backend.ts); `LockBackend` itself is
 * also here because it types the module's `backend` option.
 *
 * Test-only observation points: where the public API can show the same thing, tests observe it
 * that way (for instance the wake-up channel through `channelPrefix`). Where it cannot (how many
 * keys or listeners a backend tracks), the member carries the JSDoc tag `internal`: `stripInternal`
 * drops it from the published .d.ts, and tests, which compile against lib/, still see it. (The tag
 * is not written out here: in the comment before a declaration, it would strip that declaration.)
 *
 * @module nestjs-distributed-lock
 */
export { DistributedLockModule } from './module/distributed-lock.module';
export type {
  DistributedLockModuleOptions,
  DistributedLockModuleAsyncOptions,
  DistributedLockOptionsFactory,
  LockBackendConfig,
  MemoryBackendConfig,
  RedisBackendConfig,
  EtcdBackendConfig,
  RedlockBackendConfig,
} from './module/distributed-lock.options';
// The default `keyPrefix`: how lock keys start in Redis or etcd unless configured otherwise.
export { DEFAULT_KEY_PREFIX } from './module/distributed-lock.constants';
export { Locked } from './decorators/locked.decorator';
export type { LockableMethod, LockedDecorator, LockedOptions } from './decorators/locked.decorator';
export type { LockedKey } from './decorators/key-template.compiler';
export { LockInterceptor } from './interceptors/lock.interceptor';
export { LockService } from './service/lock.service';
export type { AcquireOptions, WithLockOptions } from './engine/acquire-options.interface';
export type {
  LockAcquiredEvent,
  LockBackendErrorEvent,
  LockBusyEvent,
  LockEventBase,
  LockGrantEventBase,
  LockEventListener,
  LockEventMap,
  LockEventType,
  LockExtendedEvent,
  LockLostEvent,
  LockReleasedEvent,
  LockSkippedEvent,
} from './observability/lock.events';
export { LOCK_EVENT_TYPES } from './observability/lock.events';
export type { LockCallInfo, LockInstrumentation } from './observability/lock.instrumentation';
export type { Lock } from './engine/lock.interface';
export type { LockKeys } from './engine/lock-key.validator';
export { LockError } from './errors/lock.error';
export { LockNotAcquiredError } from './errors/lock-not-acquired.error';
export { LockLostError } from './errors/lock-lost.error';
export { LockBackendError } from './errors/lock-backend.error';
export { LockShutdownError } from './errors/lock-shutdown.error';
export type { LockBackend } from './backends/lock-backend.interface';
export { MemoryLockBackend } from './backends/memory/memory.backend';
export type { MemoryLockBackendOptions } from './backends/memory/memory.backend';
export { RedisLockBackend } from './backends/redis';
export type {
  RedisClientLike,
  RedisClusterConnectionOptions,
  RedisClusterNode,
  RedisConnectionOptions,
  RedisLockBackendClientOptions,
  RedisLockBackendClusterOptions,
  RedisLockBackendConnectionOptions,
  RedisLockBackendOptions,
  RedisLockBackendSentinelOptions,
  RedisLockBackendTuning,
  RedisLockBackendUrlOptions,
  RedisReplicaAcks,
  RedisSentinelAddress,
} from './backends/redis';
export { EtcdLockBackend } from './backends/etcd';
export type {
  EtcdClientLike,
  EtcdClientOptions,
  EtcdLockBackendClientOptions,
  EtcdLockBackendHostsOptions,
  EtcdLockBackendOptions,
  EtcdLockBackendTuning,
} from './backends/etcd';
export { RedlockLockBackend } from './backends/redlock';
export type {
  RedlockLockBackendClientOptions,
  RedlockLockBackendOptions,
  RedlockLockBackendTuning,
  RedlockLockBackendUrlOptions,
} from './backends/redlock';
