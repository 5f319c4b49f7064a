/** An environment variable the suites cannot run without; jest's globalSetup sets them. */
export function requiredEnv(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run through jest, whose globalSetup starts the servers`);
  }
  return value;
}

/** URL of the shared test Redis. */
export function redisUrl(): string {
  return requiredEnv('REDIS_URL');
}

/** Hosts of the shared test etcd. */
export function etcdHosts(): string[] {
  return requiredEnv('ETCD_HOSTS').split(',');
}
