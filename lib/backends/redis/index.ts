export { RedisLockBackend } from './redis.backend';
export type {
  RedisClientLike,
  RedisClusterConnectionOptions,
  RedisClusterNode,
  RedisConnectionOptions,
  RedisLockBackendClientOptions,
  RedisLockBackendClusterOptions,
  RedisLockBackendConnectionOptions,
  RedisLockBackendOptions,
  RedisLockBackendTuning,
  RedisLockBackendSentinelOptions,
  RedisLockBackendUrlOptions,
  RedisReplicaAcks,
  RedisSentinelAddress,
} from './redis-backend.options';
