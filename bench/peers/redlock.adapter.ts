import { Redis } from 'ioredis';
import Redlock, { ExecutionError, Lock } from 'redlock';
import { BenchEnv, BusyError, LockAdapter } from './lock-adapter.interface';

/** Tuned: the fastest sensible retry (5 ms, small jitter), with enough retries for ~10 s. */
export const REDLOCK_TUNED = { retryDelay: 5, retryJitter: 2, retryCount: 2000 } as const;

/**
 * `redlock@5.0.0-beta.2` on one ioredis client. Defaults: retryCount 10, retryDelay 200 ms,
 * retryJitter 100 ms (so a waiter gives up after about 2 s: counted as a failed acquire).
 */
export class RedlockAdapter implements LockAdapter<Lock> {
  readonly backend = 'redis' as const;
  readonly kind = 'peer' as const;
  readonly id: string;
  readonly settings: string;

  private constructor(
    private readonly client: Redis,
    private readonly redlock: Redlock,
    tuned: boolean,
  ) {
    this.id = tuned ? 'redlock/tuned' : 'redlock/default';
    const s = redlock.settings;
    this.settings = `retryDelay ${s.retryDelay} ms, retryJitter ${s.retryJitter} ms, retryCount ${s.retryCount}`;
  }

  static async create(env: BenchEnv, tuned: boolean): Promise<RedlockAdapter> {
    const client = new Redis(env.redisUrl, { lazyConnect: true });
    await client.connect();
    const redlock = new Redlock([client], tuned ? REDLOCK_TUNED : {});
    redlock.on('error', () => undefined);
    return new RedlockAdapter(client, redlock, tuned);
  }

  async acquire(key: string, ttl: number): Promise<Lock> {
    try {
      return await this.redlock.acquire([key], ttl);
    } catch (err) {
      if (err instanceof ExecutionError) throw new BusyError(this.id, key, err);
      throw err;
    }
  }

  async release(handle: Lock): Promise<void> {
    await handle.release();
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }
}
