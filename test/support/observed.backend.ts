import type {
  BackendAcquireRequest,
  BackendAcquireResult,
  BackendExtendRequest,
  BackendLockInfo,
  BackendLockRef,
  LockBackend,
  Unsubscribe,
} from 'nestjs-distributed-lock/backend';
import type { OptionalBackendMembers } from './test-backends';

type Call = { op: 'acquire' | 'extend' | 'release' | 'cancel' | 'inspect'; detail: unknown };

/**
 * Wraps a real backend, records what the engine asks of it, and can inject faults (to play an
 * unreachable server). Every call that is not failed on purpose goes to the real backend.
 *
 * Optional members (`onLost`, `leaseDeadline`, `maxKeys`) exist on the wrapper only when the inner
 * backend has them, so the engine sees the same capabilities (`'onLost' in backend`) through it.
 * `close` is always there, to count calls; it forwards when the inner backend has one.
 */
export class ObservedBackend implements LockBackend, OptionalBackendMembers {
  // `declare`: no class field is emitted, so an absent member is really absent.
  declare readonly onLost?: LockBackend['onLost'];
  declare readonly leaseDeadline?: () => number;
  declare readonly maxKeys?: number;
  readonly calls: Call[] = [];
  /** When set, extend() rejects with this error instead of reaching the backend. */
  failExtend: Error | undefined;
  closed = 0;
  private busyWaiters: { count: number; resolve: () => void }[] = [];
  /** Acquire attempts that came back busy so far. */
  busyCount = 0;

  constructor(readonly inner: LockBackend) {
    const source: LockBackend & OptionalBackendMembers = inner;
    if (source.onLost) this.onLost = source.onLost.bind(source);
    if (source.leaseDeadline) this.leaseDeadline = source.leaseDeadline.bind(source);
    if (source.maxKeys !== undefined) this.maxKeys = source.maxKeys;
  }

  get name(): string {
    return this.inner.name;
  }

  count(op: Call['op']): number {
    return this.calls.filter((c) => c.op === op).length;
  }

  /** Resolves once `count` acquire attempts in total have come back busy. */
  busyAttempts(count: number): Promise<void> {
    if (this.busyCount >= count) return Promise.resolve();
    return new Promise((resolve) => this.busyWaiters.push({ count, resolve }));
  }

  async acquire(request: BackendAcquireRequest): Promise<BackendAcquireResult> {
    this.calls.push({ op: 'acquire', detail: request });
    const result = await this.inner.acquire(request);
    if (!result.acquired) {
      this.busyCount++;
      this.busyWaiters = this.busyWaiters.filter((w) =>
        w.count <= this.busyCount ? (w.resolve(), false) : true,
      );
    }
    return result;
  }

  async extend(requests: readonly BackendExtendRequest[]): Promise<boolean[]> {
    this.calls.push({ op: 'extend', detail: requests.length });
    if (this.failExtend) throw this.failExtend;
    return this.inner.extend(requests);
  }

  release(ref: BackendLockRef): Promise<boolean> {
    this.calls.push({ op: 'release', detail: ref });
    return this.inner.release(ref);
  }

  cancel(ref: BackendLockRef): Promise<void> {
    this.calls.push({ op: 'cancel', detail: ref });
    return this.inner.cancel(ref);
  }

  inspect(key: string): Promise<BackendLockInfo> {
    this.calls.push({ op: 'inspect', detail: key });
    return this.inner.inspect(key);
  }

  onWake(token: string, listener: Parameters<LockBackend['onWake']>[1]): Unsubscribe {
    // The listener itself: every argument the backend passes (handoff, recheckAfter) reaches it.
    return this.inner.onWake(token, listener);
  }

  async close(): Promise<void> {
    this.closed++;
    await this.inner.close?.();
  }
}
