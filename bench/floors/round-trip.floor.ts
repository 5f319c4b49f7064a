import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import type { BenchEnv } from '../peers/lock-adapter.interface';
import { median } from '../stats';
import { nowMs, withTimeout } from '../support/time.util';

/** Sequential round trips per second on one connection. */
export interface RoundTripRate {
  readonly ops: number;
  readonly seconds: number;
  readonly perSecond: number;
  /** Median round trip, ms. */
  readonly p50Ms: number;
}

/** Single-connection, sequential `SET` round trips per second, for `ms` or `maxOps`. */
export async function redisSetRate(
  env: BenchEnv,
  ms: number,
  maxOps: number,
): Promise<RoundTripRate> {
  const client = new Redis(env.redisUrl, { lazyConnect: true });
  await client.connect();
  try {
    for (let i = 0; i < 200; i++) await client.set('bench:rt:warm', String(i));
    const start = nowMs();
    const samples: number[] = [];
    while (samples.length < maxOps && nowMs() - start < ms) {
      const t0 = nowMs();
      await client.set('bench:rt:set', String(samples.length));
      samples.push(nowMs() - t0);
    }
    const seconds = (nowMs() - start) / 1000;
    const ops = samples.length;
    return { ops, seconds, perSecond: ops / seconds, p50Ms: median(samples) };
  } finally {
    client.disconnect();
  }
}

/**
 * Redis pub/sub delivery, p50 ms over at most `samples` sequential messages (bounded by `ms`):
 * `PUBLISH` sent on one connection → the message received on a subscribed connection. With the
 * release round trip, the physical cost of handing a lock to a waiter in another process.
 */
export async function redisPubSubP50(env: BenchEnv, ms: number, samples: number): Promise<number> {
  const publisher = new Redis(env.redisUrl, { lazyConnect: true });
  const subscriber = new Redis(env.redisUrl, { lazyConnect: true });
  const channel = 'bench:rt:pubsub';
  try {
    await Promise.all([publisher.connect(), subscriber.connect()]);
    await subscriber.subscribe(channel);
    let delivered: (() => void) | undefined;
    subscriber.on('message', () => delivered?.());
    const latencies: number[] = [];
    const start = nowMs();
    for (let i = 0; i < samples + 50 && nowMs() - start < ms; i++) {
      const received = new Promise<void>((resolve) => (delivered = resolve));
      const t0 = nowMs();
      void publisher.publish(channel, String(i));
      await withTimeout(received, 5_000, 'pub/sub delivery');
      // The first 50 warm both connections up.
      if (i >= 50) latencies.push(nowMs() - t0);
    }
    return median(latencies);
  } finally {
    publisher.disconnect();
    subscriber.disconnect();
  }
}

/** Single-client, sequential etcd `put` round trips per second, for `ms` or `maxOps`. */
export async function etcdPutRate(
  env: BenchEnv,
  ms: number,
  maxOps: number,
): Promise<RoundTripRate> {
  const client = new Etcd3({ hosts: env.etcdHost });
  try {
    for (let i = 0; i < 100; i++) await client.put('bench/rt/warm').value(String(i));
    const start = nowMs();
    const samples: number[] = [];
    while (samples.length < maxOps && nowMs() - start < ms) {
      const t0 = nowMs();
      await client.put('bench/rt/put').value(String(samples.length));
      samples.push(nowMs() - t0);
    }
    const seconds = (nowMs() - start) / 1000;
    const ops = samples.length;
    return { ops, seconds, perSecond: ops / seconds, p50Ms: median(samples) };
  } finally {
    client.close();
  }
}
