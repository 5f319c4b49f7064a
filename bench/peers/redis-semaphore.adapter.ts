import { Redis } from 'ioredis';
import { Mutex, TimeoutError, defaultTimeoutOptions } from 'redis-semaphore';
import { ACQUIRE_WAIT_MS, BenchEnv, BusyError, LockAdapter } from './lock-adapter.interface';

/**
 * `redis-semaphore`'s `Mutex` (SET NX PX polling, refresh timer while held) on one ioredis client.
 * Defaults: retryInterval 10 ms, acquireTimeout 10 s; tuned: retryInterval 5 ms.
 */
export class RedisSemaphoreAdapter implements LockAdapter<Mutex> {
  readonly backend = 'redis' as const;
  readonly kind = 'peer' as const;
  readonly id: string;
  readonly settings: string;
  private readonly retryInterval: number | undefined;

  private constructor(
    private readonly client: Redis,
    tuned: boolean,
  ) {
    this.id = tuned ? 'redis-semaphore/tuned' : 'redis-semaphore/default';
    this.retryInterval = tuned ? 5 : undefined;
    this.settings = `Mutex, retryInterval ${this.retryInterval ?? defaultTimeoutOptions.retryInterval} ms, acquireTimeout ${defaultTimeoutOptions.acquireTimeout} ms`;
  }

  static async create(env: BenchEnv, tuned: boolean): Promise<RedisSemaphoreAdapter> {
    const client = new Redis(env.redisUrl, { lazyConnect: true });
    await client.connect();
    return new RedisSemaphoreAdapter(client, tuned);
  }

  async acquire(key: string, ttl: number): Promise<Mutex> {
    const mutex = new Mutex(this.client, key, {
      lockTimeout: ttl,
      acquireTimeout: ACQUIRE_WAIT_MS,
      ...(this.retryInterval === undefined ? {} : { retryInterval: this.retryInterval }),
    });
    try {
      await mutex.acquire();
    } catch (err) {
      if (err instanceof TimeoutError) throw new BusyError(this.id, key, err);
      throw err;
    }
    return mutex;
  }

  async release(handle: Mutex): Promise<void> {
    await handle.release();
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }
}
