import type { DistributedLockModuleOptions } from 'nestjs-distributed-lock';

/**
 * Reads the lock module options from the environment:
 * - LOCK_BACKEND: `memory` (default), `redis` or `etcd`
 * - REDIS_URL: for `redis` (default `redis://127.0.0.1:6379`)
 * - ETCD_HOSTS: for `etcd`, comma-separated (default `http://127.0.0.1:2379`)
 * - LOCK_TTL, LOCK_WAIT: milliseconds (defaults 30000 and 10000); LOCK_PREFIX
 */
export function lockOptionsFromEnv(
  env: NodeJS.ProcessEnv = process.env,
): DistributedLockModuleOptions {
  const backend = env.LOCK_BACKEND ?? 'memory';
  const options: DistributedLockModuleOptions = {
    keyPrefix: env.LOCK_PREFIX ?? 'sample:lock:',
    ttl: env.LOCK_TTL ? Number(env.LOCK_TTL) : undefined,
    wait: env.LOCK_WAIT ? Number(env.LOCK_WAIT) : undefined,
  };
  switch (backend) {
    case 'memory':
      return { ...options, backend: { type: 'memory' } };
    case 'redis':
      return {
        ...options,
        backend: { type: 'redis', url: env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
      };
    case 'etcd':
      return {
        ...options,
        backend: {
          type: 'etcd',
          hosts: (env.ETCD_HOSTS ?? 'http://127.0.0.1:2379').split(',').map((h) => h.trim()),
        },
      };
    default:
      throw new Error(`LOCK_BACKEND must be memory, redis or etcd; got "${backend}"`);
  }
}
