import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import type { BenchEnv } from '../peers/lock-adapter.interface';
import { median } from '../stats';
import { nowMs, sleep } from './time.util';

/**
 * Reads how many waiters are queued on a lock straight from the store, through the key layout
 * the README documents (Redis: the `{K}:q` sorted set; etcd: the member keys `K\0...`, the
 * holder's included), so that a fault scenario can order its waiters without sleeping on a guess.
 */
export class QueueDepthProbe {
  private constructor(
    private readonly backend: 'redis' | 'etcd',
    private readonly redis: Redis | undefined,
    private readonly etcd: Etcd3 | undefined,
  ) {}

  static async open(backend: 'redis' | 'etcd', env: BenchEnv): Promise<QueueDepthProbe> {
    if (backend === 'redis') {
      const redis = new Redis(env.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await redis.connect();
      return new QueueDepthProbe(backend, redis, undefined);
    }
    const etcd = new Etcd3({ hosts: env.etcdHost });
    await etcd.get('bench/ping').string();
    return new QueueDepthProbe(backend, undefined, etcd);
  }

  /** Waiters queued on `finalKey` (the key with the module's prefix), holder not counted. */
  async waiters(finalKey: string): Promise<number> {
    if (this.redis) return this.redis.zcard(`{${finalKey}}:q`);
    const etcd = this.etcd as Etcd3;
    const members = await etcd.getAll().prefix(`${finalKey}\u0000`).count();
    return Math.max(0, members - 1);
  }

  /** Resolves once at least `count` waiters are queued on `finalKey`; throws after `ms`. */
  async until(finalKey: string, count: number, ms: number): Promise<void> {
    const deadline = nowMs() + ms;
    let seen = -1;
    for (let i = 0; i < 1_000 && nowMs() < deadline; i++) {
      seen = await this.waiters(finalKey);
      if (seen >= count) return;
      await sleep(10);
    }
    throw new Error(
      `${count} waiter(s) not seen queued on ${finalKey} within ${ms} ms (saw ${seen})`,
    );
  }

  /** Median of `n` PING round trips, ms (Redis; NaN on etcd, whose bound has no round trip). */
  async roundTripMs(n = 20): Promise<number> {
    if (!this.redis) return Number.NaN;
    const samples: number[] = [];
    for (let i = 0; i < n; i++) {
      const start = nowMs();
      await this.redis.ping();
      samples.push(nowMs() - start);
    }
    return median(samples);
  }

  close(): void {
    this.redis?.disconnect();
    this.etcd?.close();
  }
}
