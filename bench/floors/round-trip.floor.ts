import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import type { BenchEnv } from '../peers/lock-adapter.interface';
import { nowMs } from '../support/time.util';

/** Sequential round trips per second on one connection. */
export interface RoundTripRate {
  readonly ops: number;
  readonly seconds: number;
  readonly perSecond: number;
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
    let ops = 0;
    while (ops < maxOps && nowMs() - start < ms) {
      await client.set('bench:rt:set', String(ops));
      ops++;
    }
    const seconds = (nowMs() - start) / 1000;
    return { ops, seconds, perSecond: ops / seconds };
  } finally {
    client.disconnect();
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
    let ops = 0;
    while (ops < maxOps && nowMs() - start < ms) {
      await client.put('bench/rt/put').value(String(ops));
      ops++;
    }
    const seconds = (nowMs() - start) / 1000;
    return { ops, seconds, perSecond: ops / seconds };
  } finally {
    client.close();
  }
}
