import { Redis } from 'ioredis';
import Redlock, { ExecutionError as RedlockExecutionError } from 'redlock';
import {
  ExecutionError as SesameExecutionError,
  Redlock as SesameRedlock,
} from '@sesamecare-oss/redlock';
import { BenchEnv, BusyError, LockAdapter } from './lock-adapter.interface';

/** Tuned: the fastest sensible retry (5 ms, small jitter), with enough retries for ~10 s. */
export const REDLOCK_TUNED = { retryDelay: 5, retryJitter: 2, retryCount: 2000 } as const;

/** What this adapter needs of a redlock-style client (both libraries share the API). */
interface RedlockLike {
  readonly settings: { retryDelay: number; retryJitter: number; retryCount: number };
  acquire(resources: string[], ttl: number): Promise<{ release(): Promise<unknown> }>;
  on(event: 'error', listener: () => void): unknown;
}

/** One redlock-family library: its id prefix, constructor and "gave up" error. */
interface RedlockFlavour {
  readonly name: string;
  create(client: Redis, settings: typeof REDLOCK_TUNED | Record<string, never>): RedlockLike;
  isBusy(err: unknown): boolean;
}

/** `redlock@5.0.0-beta.2`. */
export const REDLOCK: RedlockFlavour = {
  name: 'redlock',
  create: (client, settings) => new Redlock([client], settings),
  isBusy: (err) => err instanceof RedlockExecutionError,
};

/** `@sesamecare-oss/redlock`, the maintained fork, same API and defaults. */
export const SESAME_REDLOCK: RedlockFlavour = {
  name: 'sesame-redlock',
  create: (client, settings) => new SesameRedlock([client], settings),
  isBusy: (err) => err instanceof SesameExecutionError,
};

type Handle = Awaited<ReturnType<RedlockLike['acquire']>>;

/**
 * A redlock-family library on one ioredis client. Defaults: retryCount 10, retryDelay 200 ms,
 * retryJitter 100 ms (so a waiter gives up after about 2 s: counted as a failed acquire).
 */
export class RedlockAdapter implements LockAdapter<Handle> {
  readonly backend = 'redis' as const;
  readonly kind = 'peer' as const;
  readonly id: string;
  readonly settings: string;

  private constructor(
    private readonly client: Redis,
    private readonly redlock: RedlockLike,
    private readonly flavour: RedlockFlavour,
    tuned: boolean,
  ) {
    this.id = `${flavour.name}/${tuned ? 'tuned' : 'default'}`;
    const s = redlock.settings;
    this.settings = `retryDelay ${s.retryDelay} ms, retryJitter ${s.retryJitter} ms, retryCount ${s.retryCount}`;
  }

  static async create(
    flavour: RedlockFlavour,
    env: BenchEnv,
    tuned: boolean,
  ): Promise<RedlockAdapter> {
    const client = new Redis(env.redisUrl, { lazyConnect: true });
    await client.connect();
    const redlock = flavour.create(client, tuned ? REDLOCK_TUNED : {});
    redlock.on('error', () => undefined);
    return new RedlockAdapter(client, redlock, flavour, tuned);
  }

  async acquire(key: string, ttl: number): Promise<Handle> {
    try {
      return await this.redlock.acquire([key], ttl);
    } catch (err) {
      if (this.flavour.isBusy(err)) throw new BusyError(this.id, key, err);
      throw err;
    }
  }

  async release(handle: Handle): Promise<void> {
    await handle.release();
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }
}
