import type {
  BackendAcquireRequest,
  BackendAcquireResult,
  BackendExtendRequest,
  BackendLockInfo,
  BackendLockRef,
  LockBackend,
  Unsubscribe,
} from 'nestjs-distributed-lock/backend';
import { sleep } from './async.helpers';

type CallRecord =
  | { readonly op: 'acquire'; readonly detail: BackendAcquireRequest }
  | { readonly op: 'extend'; readonly detail: number }
  | { readonly op: 'release' | 'cancel'; readonly detail: BackendLockRef }
  | { readonly op: 'inspect'; readonly detail: string };

/** One call the engine made; `settled` turns true once its answer (or error) is back. */
export type ObservedCall = CallRecord & { settled: boolean };

export interface ObservedBackendOptions {
  /**
   * Extra ms each release() takes after the real backend answered, the way a remote server's
   * reply arrives late, so that a release still in flight at some point can be seen.
   */
  readonly releaseDelay?: number;
}

/**
 * Wraps a real backend, records what the engine asks of it, and can inject faults (to play an
 * unreachable server). Every call that is not failed on purpose goes to the real backend.
 *
 * Optional members (`onLost`, `leaseDeadline`, `maxKeys`) exist on the wrapper only when the inner
 * backend has them, so the engine sees the same capabilities (`'onLost' in backend`) through it.
 * `close` is always there, to count calls; it forwards when the inner backend has one.
 */
export class ObservedBackend implements LockBackend {
  // `declare`: no class field is emitted, so an absent member is really absent.
  declare readonly onLost?: LockBackend['onLost'];
  declare readonly leaseDeadline?: LockBackend['leaseDeadline'];
  declare readonly maxKeys?: LockBackend['maxKeys'];
  readonly calls: ObservedCall[] = [];
  /** When set, extend() rejects with this error instead of reaching the backend. */
  failExtend: Error | undefined;
  closed = 0;
  private busyWaiters: { count: number; resolve: () => void }[] = [];
  /** Acquire attempts that came back busy so far. */
  busyCount = 0;

  constructor(
    readonly inner: LockBackend,
    private readonly options: ObservedBackendOptions = {},
  ) {
    if (inner.onLost) this.onLost = inner.onLost.bind(inner);
    if (inner.leaseDeadline) this.leaseDeadline = inner.leaseDeadline.bind(inner);
    if (inner.maxKeys !== undefined) this.maxKeys = inner.maxKeys;
  }

  get name(): string {
    return this.inner.name;
  }

  count(op: ObservedCall['op']): number {
    return this.calls.filter((c) => c.op === op).length;
  }

  /** The release() calls so far, in order, each with its ref and whether it has settled. */
  releases(): { readonly ref: BackendLockRef; readonly settled: boolean }[] {
    return this.calls.flatMap((c) =>
      c.op === 'release' ? [{ ref: c.detail, settled: c.settled }] : [],
    );
  }

  /** Resolves once `count` acquire attempts in total have come back busy. */
  busyAttempts(count: number): Promise<void> {
    if (this.busyCount >= count) return Promise.resolve();
    return new Promise((resolve) => this.busyWaiters.push({ count, resolve }));
  }

  /** Records the call, runs it, and marks it settled however it ends. */
  private async observe<T>(record: CallRecord, run: () => Promise<T>): Promise<T> {
    const call: ObservedCall = { ...record, settled: false };
    this.calls.push(call);
    try {
      return await run();
    } finally {
      call.settled = true;
    }
  }

  acquire(request: BackendAcquireRequest): Promise<BackendAcquireResult> {
    return this.observe({ op: 'acquire', detail: request }, async () => {
      const result = await this.inner.acquire(request);
      if (!result.acquired) {
        this.busyCount++;
        this.busyWaiters = this.busyWaiters.filter((w) =>
          w.count <= this.busyCount ? (w.resolve(), false) : true,
        );
      }
      return result;
    });
  }

  extend(requests: readonly BackendExtendRequest[]): Promise<(boolean | Error)[]> {
    return this.observe({ op: 'extend', detail: requests.length }, async () => {
      if (this.failExtend) throw this.failExtend;
      return this.inner.extend(requests);
    });
  }

  release(ref: BackendLockRef): Promise<boolean> {
    return this.observe({ op: 'release', detail: ref }, async () => {
      const released = await this.inner.release(ref);
      if (this.options.releaseDelay) await sleep(this.options.releaseDelay);
      return released;
    });
  }

  cancel(ref: BackendLockRef): Promise<void> {
    return this.observe({ op: 'cancel', detail: ref }, () => this.inner.cancel(ref));
  }

  inspect(key: string): Promise<BackendLockInfo> {
    return this.observe({ op: 'inspect', detail: key }, () => this.inner.inspect(key));
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
