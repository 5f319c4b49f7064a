export { RedisLockBackend } from './redis.backend';
export type {
  RedisClientLike,
  RedisConnectionOptions,
  RedisLockBackendClientOptions,
  RedisLockBackendConnectionOptions,
  RedisLockBackendOptions,
  RedisLockBackendTuning,
  RedisLockBackendSentinelOptions,
  RedisLockBackendUrlOptions,
  RedisReplicaAcks,
  RedisSentinelAddress,
} from './redis-backend.options';
