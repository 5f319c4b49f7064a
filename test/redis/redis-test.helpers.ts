import Redis, { type RedisOptions } from 'ioredis';
import { RedisLockBackend } from '../../lib/backends/redis';
import type { RedisLockBackendOptions } from '../../lib/backends/redis';
import { startRedis } from '../servers/redis.server';
import { removeDir, type ServerProcess } from '../servers/server.process';
import { redisUrl } from '../support/test-env';

/**
 * Tracks the backends and raw clients a test opens, and closes them all in `closeAll()` so no
 * socket keeps jest alive.
 */
export class Resources {
  private readonly backends: RedisLockBackend[] = [];
  private readonly clients: Redis[] = [];

  backend(options: Partial<RedisLockBackendOptions> = {}): RedisLockBackend {
    const backend = new RedisLockBackend(
      ('client' in options && options.client) || ('options' in options && options.options)
        ? (options as RedisLockBackendOptions)
        : ({ url: redisUrl(), ...options } as RedisLockBackendOptions),
    );
    this.backends.push(backend);
    return backend;
  }

  /** A plain ioredis client, for inspecting Redis directly. */
  client(url = redisUrl(), options: RedisOptions = {}): Redis {
    const client = new Redis(url, { maxRetriesPerRequest: 1, ...options });
    client.on('error', () => undefined);
    this.clients.push(client);
    return client;
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.backends.splice(0).map((b) => b.close()));
    for (const client of this.clients.splice(0)) client.disconnect();
  }
}

/** Redis keys whose name contains `marker`, via SCAN (bounded). */
export async function keysContaining(client: Redis, marker: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  for (let i = 0; i < 10_000; i++) {
    const [next, batch] = await client.scan(cursor, 'MATCH', `*${marker}*`, 'COUNT', 1000);
    found.push(...batch);
    cursor = next;
    if (cursor === '0') break;
  }
  return found;
}

/**
 * Redis servers a test starts itself (to stop, freeze or misconfigure them); `stopAll()`, in
 * afterEach, thaws a server a failed test left frozen, stops it and removes its dir.
 */
export class OwnRedisServers {
  private readonly servers: ServerProcess[] = [];

  async start(options: Parameters<typeof startRedis>[0] = {}): Promise<ServerProcess> {
    const server = await startRedis(options);
    this.servers.push(server);
    return server;
  }

  async stopAll(): Promise<void> {
    for (const server of this.servers.splice(0)) {
      try {
        process.kill(server.pid, 'SIGCONT');
      } catch {
        // already gone
      }
      await server.stop();
      removeDir(server.dir);
    }
  }
}
