import { Etcd3, EtcdLockFailedError, Lock } from 'etcd3';
import { ACQUIRE_WAIT_MS, BenchEnv, BusyError, LockAdapter } from './lock-adapter.interface';
import { nowMs, sleep } from '../support/time.util';

/** The harness's retry interval when the etcd3 lock is "at its defaults" (it has no wait). */
export const ETCD3_DEFAULT_RETRY_MS = 100;

/**
 * The `etcd3` client's own `Lock`: each attempt grants a fresh lease (ttl in whole seconds) and
 * runs a put-if-absent transaction; a busy lock rejects at once (`EtcdLockFailedError`) and the
 * lease is revoked. It has no waiting of its own, so the adapter retries: every 100 ms "at
 * defaults", every 5 ms tuned.
 */
export class Etcd3LockAdapter implements LockAdapter<Lock> {
  readonly backend = 'etcd' as const;
  readonly kind = 'peer' as const;
  readonly id: string;
  readonly settings: string;

  private constructor(
    private readonly client: Etcd3,
    private readonly retryMs: number,
    tuned: boolean,
  ) {
    this.id = tuned ? 'etcd3-lock/tuned' : 'etcd3-lock/default';
    this.settings = `client.lock(key).ttl(ceil(ttl/1000) s).acquire(), harness retry every ${retryMs} ms (no built-in wait)`;
  }

  static async create(env: BenchEnv, tuned: boolean): Promise<Etcd3LockAdapter> {
    const client = new Etcd3({ hosts: env.etcdHost });
    await client.get('bench/ping').string();
    return new Etcd3LockAdapter(client, tuned ? 5 : ETCD3_DEFAULT_RETRY_MS, tuned);
  }

  async acquire(key: string, ttl: number): Promise<Lock> {
    const seconds = Math.max(1, Math.ceil(ttl / 1000));
    const deadline = nowMs() + ACQUIRE_WAIT_MS;
    let last: unknown;
    for (let attempt = 0; attempt < 100_000 && nowMs() < deadline; attempt++) {
      const lock = this.client.lock(key).ttl(seconds);
      try {
        return await lock.acquire();
      } catch (err) {
        if (!(err instanceof EtcdLockFailedError)) throw err;
        last = err;
      }
      await sleep(this.retryMs);
    }
    throw new BusyError(this.id, key, last);
  }

  async release(handle: Lock): Promise<void> {
    await handle.release();
  }

  async close(): Promise<void> {
    this.client.close();
  }
}
