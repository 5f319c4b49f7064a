import { randomBytes } from 'node:crypto';
import Redis, { type RedisOptions } from 'ioredis';
import { RedisLockBackend } from '../../lib/backends/redis';
import type { RedisLockBackendOptions } from '../../lib/backends/redis';

/** URL of the shared test Redis started by jest's globalSetup. */
export function sharedRedisUrl(): string {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error('REDIS_URL is not set: run through jest so globalSetup starts Redis');
  return url;
}

/** A random suffix, so each test owns its keys on the shared server. */
export function uniqueId(): string {
  return randomBytes(6).toString('hex');
}

/** Random owner token. */
export function newToken(label = 't'): string {
  return `${label}-${randomBytes(8).toString('hex')}`;
}

/** Resolves with the elapsed ms of `promise`, whether it resolves or rejects. */
export async function timed<T>(
  promise: Promise<T>,
): Promise<{ ms: number; value?: T; error?: unknown }> {
  const start = Date.now();
  try {
    const value = await promise;
    return { ms: Date.now() - start, value };
  } catch (error) {
    return { ms: Date.now() - start, error };
  }
}

/** Resolves true when `promise` settles within `ms`, false otherwise. */
export function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    promise.then(
      () => {
        clearTimeout(timer);
        resolve(true);
      },
      () => {
        clearTimeout(timer);
        resolve(true);
      },
    );
  });
}

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
        : ({ url: sharedRedisUrl(), ...options } as RedisLockBackendOptions),
    );
    this.backends.push(backend);
    return backend;
  }

  /** A plain ioredis client, for inspecting Redis directly. */
  client(url = sharedRedisUrl(), options: RedisOptions = {}): Redis {
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

/** Redis Cluster hash slot of `key` (CRC16/XMODEM of its hash tag, mod 16384). */
export function clusterSlot(key: string): number {
  const open = key.indexOf('{');
  let tagged = key;
  if (open !== -1) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) tagged = key.slice(open + 1, close);
  }
  let crc = 0;
  for (const byte of Buffer.from(tagged, 'utf8')) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
  }
  return crc % 16384;
}
