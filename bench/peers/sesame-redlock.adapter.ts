import { ExecutionError, Lock, Redlock } from '@sesamecare-oss/redlock';
import { Redis } from 'ioredis';
import { BenchEnv, BusyError, LockAdapter } from './lock-adapter.interface';
import { REDLOCK_TUNED } from './redlock.adapter';

/**
 * `@sesamecare-oss/redlock` (maintained redlock fork) on one ioredis client. Same defaults as
 * redlock: retryCount 10, retryDelay 200 ms, retryJitter 100 ms.
 */
export class SesameRedlockAdapter implements LockAdapter<Lock> {
  readonly backend = 'redis' as const;
  readonly kind = 'peer' as const;
  readonly id: string;
  readonly settings: string;

  private constructor(
    private readonly client: Redis,
    private readonly redlock: Redlock,
    tuned: boolean,
  ) {
    this.id = tuned ? 'sesame-redlock/tuned' : 'sesame-redlock/default';
    const s = redlock.settings;
    this.settings = `retryDelay ${s.retryDelay} ms, retryJitter ${s.retryJitter} ms, retryCount ${s.retryCount}`;
  }

  static async create(env: BenchEnv, tuned: boolean): Promise<SesameRedlockAdapter> {
    const client = new Redis(env.redisUrl, { lazyConnect: true });
    await client.connect();
    const redlock = new Redlock([client], tuned ? REDLOCK_TUNED : {});
    redlock.on('error', () => undefined);
    return new SesameRedlockAdapter(client, redlock, tuned);
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
