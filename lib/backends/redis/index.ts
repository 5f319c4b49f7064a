export { RedisLockBackend } from './redis.backend';
export type {
  RedisLockBackendClientOptions,
  RedisLockBackendConnectionOptions,
  RedisLockBackendOptions,
  RedisLockBackendTuning,
  RedisLockBackendUrlOptions,
} from './redis-backend.options';
