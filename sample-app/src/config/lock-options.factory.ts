import type { DistributedLockModuleOptions } from 'nestjs-distributed-lock';

/**
 * Reads the lock module options from the environment:
 * - LOCK_BACKEND: `memory` (default), `redis` or `etcd`
 * - LOCK_TTL, LOCK_WAIT: milliseconds (defaults 30000 and 10000)
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
    default:
      throw new Error(`LOCK_BACKEND must be memory, redis or etcd; got "${backend}"`);
  }
}
