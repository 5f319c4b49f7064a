import { Mutex } from 'async-mutex';
import type { LockAdapter } from './lock-adapter.interface';

/** One key's mutex and how many callers hold or await it (the entry goes when none does). */
interface KeyedMutex {
  readonly mutex: Mutex;
  users: number;
}

/** A lock held through {@link AsyncMutexFloor}. */
export interface MutexHandle {
  readonly key: string;
  readonly entry: KeyedMutex;
  readonly releaser: () => void;
}

/**
 * The in-process floor of the memory backend: `async-mutex` (a FIFO promise mutex), one `Mutex`
 * per key in a map that drops a key once nobody holds or awaits it, as an application locking
 * per key in one process would write it. No ttl, no fencing token, no renewal: the cost of mutual
 * exclusion in one process and nothing else, which is what the memory backend is compared with.
 */
export class AsyncMutexFloor implements LockAdapter<MutexHandle> {
  readonly id = 'floor/async-mutex';
  readonly backend = 'memory' as const;
  readonly kind = 'floor' as const;
  readonly singleProcess = true;
  readonly settings =
    'async-mutex Mutex per key (Map, dropped when unused), acquire() / releaser(); ttl ignored';
  private readonly keys = new Map<string, KeyedMutex>();

  static async create(): Promise<AsyncMutexFloor> {
    return new AsyncMutexFloor();
  }

  async acquire(key: string): Promise<MutexHandle> {
    let entry = this.keys.get(key);
    if (!entry) this.keys.set(key, (entry = { mutex: new Mutex(), users: 0 }));
    entry.users++;
    const releaser = await entry.mutex.acquire();
    return { key, entry, releaser };
  }

  async release(handle: MutexHandle): Promise<void> {
    handle.releaser();
    if (--handle.entry.users === 0 && this.keys.get(handle.key) === handle.entry) {
      this.keys.delete(handle.key);
    }
  }

  async close(): Promise<void> {
    this.keys.clear();
  }
}
