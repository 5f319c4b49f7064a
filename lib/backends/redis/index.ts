export { RedisLockBackend } from './redis.backend';
export type {
  RedisClientLike,
  RedisConnectionOptions,
  RedisLockBackendClientOptions,
  RedisLockBackendConnectionOptions,
  RedisLockBackendOptions,
  RedisLockBackendTuning,
  RedisLockBackendUrlOptions,
} from './redis-backend.options';
