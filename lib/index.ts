export { DistributedLockModule } from './module/distributed-lock.module';
export type {
  DistributedLockModuleOptions,
  DistributedLockModuleAsyncOptions,
  DistributedLockOptionsFactory,
  LockBackendConfig,
  MemoryBackendConfig,
  RedisBackendConfig,
  EtcdBackendConfig,
} from './module/distributed-lock.options';
export {
  DISTRIBUTED_LOCK_OPTIONS,
  DEFAULT_KEY_PREFIX,
  DEFAULT_TTL,
  DEFAULT_WAIT,
} from './module/distributed-lock.constants';
export { Locked } from './decorators/locked.decorator';
export type { LockedOptions } from './decorators/locked.decorator';
export type { LockedKey } from './decorators/key-template.compiler';
export { LockInterceptor } from './interceptors/lock.interceptor';
export { LockService } from './service/lock.service';
export type { AcquireOptions } from './engine/acquire-options.interface';
export type { Lock } from './engine/lock.interface';
export type { LockKeys } from './engine/lock-key.validator';
export { LockError } from './errors/lock.error';
export { LockNotAcquiredError } from './errors/lock-not-acquired.error';
export { LockLostError } from './errors/lock-lost.error';
export { LockBackendError } from './errors/lock-backend.error';
export type {
  LockBackend,
  BackendAcquireRequest,
  BackendAcquireResult,
  BackendExtendRequest,
  BackendLockInfo,
  BackendHandoff,
  BackendLockRef,
  BackendLossEvent,
  Unsubscribe,
} from './backends/lock-backend.interface';
export { MemoryLockBackend } from './backends/memory/memory.backend';
export type { MemoryLockBackendOptions } from './backends/memory/memory.backend';
export * from './backends/redis';
export * from './backends/etcd';
