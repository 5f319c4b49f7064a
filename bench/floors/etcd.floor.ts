import { randomBytes } from 'node:crypto';
import { Etcd3, Lease, Watcher } from 'etcd3';
import { ACQUIRE_WAIT_MS, BusyError, BenchEnv, LockAdapter } from '../peers/lock-adapter.interface';
import { nowMs } from '../support/time.util';
import type { RawHandle } from './redis.floor';
import { KeyedWakeups } from '../support/keyed.wakeups';

/** Longest a waiter parks without a delete event before it re-checks (lost-event cover). */
const WATCH_FALLBACK_MS = 50;

/**
 * The etcd floor, no lock library: one lease shared by every lock of the process, a
 * put-if-absent transaction (`create_revision == 0`) attached to that lease, a compare-and-delete
 * transaction on release, and waiting by watch (a per-key watcher, created before retrying, whose
 * delete events trigger the next attempt).
 */
export class EtcdFloor implements LockAdapter<RawHandle> {
  readonly id = 'floor/etcd-watch';
  readonly backend = 'etcd' as const;
  readonly kind = 'floor' as const;
  readonly settings = `shared lease, txn put-if-absent, txn compare-and-delete, wait by watch (fallback ${WATCH_FALLBACK_MS} ms)`;
  private lease: { lease: Lease; id: Promise<string> } | undefined;
  private readonly watchers = new Map<string, Promise<Watcher>>();
  private readonly wakeups = new KeyedWakeups(WATCH_FALLBACK_MS);

  private constructor(private readonly client: Etcd3) {}

  static async create(env: BenchEnv): Promise<EtcdFloor> {
    const client = new Etcd3({ hosts: env.etcdHost });
    await client.get('bench/ping').string();
    return new EtcdFloor(client);
  }

  async acquire(key: string, ttl: number): Promise<RawHandle> {
    const token = randomBytes(16).toString('hex');
    const leaseId = await this.leaseId(ttl);
    const tryOnce = async (): Promise<boolean> => {
      const res = await this.client
        .if(key, 'Create', '==', 0)
        .then(this.client.put(key).value(token).lease(leaseId))
        .commit();
      return res.succeeded;
    };
    if (await tryOnce()) return { key, token };
    await this.watch(key);
    const deadline = nowMs() + ACQUIRE_WAIT_MS;
    for (let round = 0; round < 1_000_000 && nowMs() < deadline; round++) {
      const { woken, cancel } = this.wakeups.listen(key);
      if (await tryOnce()) {
        cancel();
        return { key, token };
      }
      await woken;
    }
    throw new BusyError(this.id, key);
  }

  async release(handle: RawHandle): Promise<void> {
    await this.client
      .if(handle.key, 'Value', '==', handle.token)
      .then(this.client.delete().key(handle.key))
      .commit();
  }

  async close(): Promise<void> {
    const watchers = await Promise.allSettled([...this.watchers.values()]);
    for (const w of watchers) if (w.status === 'fulfilled') await w.value.cancel();
    if (this.lease) await this.lease.lease.revoke().catch(() => undefined);
    this.client.close();
  }

  private leaseId(ttl: number): Promise<string> {
    if (!this.lease) {
      const lease = this.client.lease(Math.max(1, Math.ceil(ttl / 1000)));
      lease.on('lost', () => undefined);
      this.lease = { lease, id: lease.grant() };
    }
    return this.lease.id;
  }

  private watch(key: string): Promise<Watcher> {
    let watcher = this.watchers.get(key);
    if (!watcher) {
      watcher = this.client
        .watch()
        .key(key)
        .create()
        .then((w) => {
          w.on('delete', () => {
            this.wakeups.wake(key);
          });
          w.on('error', () => undefined);
          return w;
        });
      this.watchers.set(key, watcher);
    }
    return watcher;
  }
}
