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

/**
 * Runs `fn` with `vars` set in process.env, then puts back each of them as it was (deleted when
 * it was unset): the sample app reads its configuration from the environment at startup.
 */
export async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.keys(vars).map((name) => [name, process.env[name]] as const);
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}
