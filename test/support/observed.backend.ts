import type {
  BackendAcquireRequest,
  BackendHandoff,
  BackendAcquireResult,
  BackendExtendRequest,
  BackendLockInfo,
  BackendLockRef,
  LockBackend,
  Unsubscribe,
} from 'nestjs-distributed-lock';

type Call = { op: 'acquire' | 'extend' | 'release' | 'cancel' | 'inspect'; detail: unknown };

/**
 * Wraps a real backend, records what the engine asks of it, and can inject faults (to play an
 * unreachable server). Every call that is not failed on purpose goes to the real backend.
 */
export class ObservedBackend implements LockBackend {
  readonly calls: Call[] = [];
  /** When set, extend() rejects with this error instead of reaching the backend. */
  failExtend: Error | undefined;
  closed = 0;
  private busyWaiters: { count: number; resolve: () => void }[] = [];
  /** Acquire attempts that came back busy so far. */
  busyCount = 0;

  constructor(readonly inner: LockBackend) {}

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

  onWake(token: string, listener: (handoff?: BackendHandoff) => void): Unsubscribe {
    return this.inner.onWake(token, listener);
  }

  async close(): Promise<void> {
    this.closed++;
    await this.inner.close?.();
  }
}
