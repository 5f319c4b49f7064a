import { LockBackendError } from '../../errors/lock-backend.error';
import type { Etcd3Exports } from './etcd-client.loader';

/** Per-call gRPC options: an absolute deadline in epoch ms. */
export interface EtcdCallOptions {
  readonly deadline: number;
}

/** etcd server errors that say "not now" rather than "never": worth another try within budget. */
const TRANSIENT_MESSAGES =
  /leader changed|no leader|request timed out|too many requests|not capable|unhealthy cluster|server is stopping|broken circuit|timeout/i;

const MAX_ATTEMPTS = 50;

/** Whether the error says that the lease named in a request no longer exists. */
export function isLeaseNotFound(err: unknown): boolean {
  const cause = err instanceof LockBackendError ? err.cause : err;
  return (
    cause instanceof Error &&
    /requested lease not found|lease .* is expired or revoked/i.test(cause.message)
  );
}

/** Sleeps `ms` without keeping the process alive. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)).unref());
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Runs etcd calls in a bounded time. The etcd3 client retries and fails over by itself (cockatiel
 * policies) but has no overall deadline, and a few etcd errors during a leader election are not
 * retried by it at all; here every operation gets one budget, a gRPC deadline inside that budget,
 * a local timer in case the client waits somewhere without one, and retries of transient errors
 * while the budget lasts. Every operation the backend sends is idempotent, which is what makes
 * retrying an ambiguous failure safe.
 */
export class EtcdRpc {
  constructor(
    private readonly etcd3: Etcd3Exports | undefined,
    /** Budget per operation in ms. */
    readonly timeout: number,
  ) {}

  /**
   * Runs `call` until it succeeds, fails for good, or the budget runs out.
   *
   * @throws LockBackendError with the last failure as `cause`
   */
  async run<T>(operation: string, call: (options: EtcdCallOptions) => Promise<T>): Promise<T> {
    const start = performance.now();
    let lastError: unknown;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const remaining = this.timeout - (performance.now() - start);
      if (remaining <= 0) break;
      try {
        return await this.within(remaining, call({ deadline: Date.now() + remaining }));
      } catch (err) {
        lastError = err;
        if (!this.isTransient(err)) {
          throw new LockBackendError('etcd', operation, describe(err), { cause: err });
        }
      }
      const left = this.timeout - (performance.now() - start);
      if (left <= 0) break;
      await sleep(Math.min(left, 25 * 2 ** Math.min(attempt, 4)));
    }
    throw new LockBackendError(
      'etcd',
      operation,
      `no answer within ${this.timeout} ms${lastError === undefined ? '' : ` (last error: ${describe(lastError)})`}`,
      { cause: lastError },
    );
  }

  private isTransient(err: unknown): boolean {
    if (typeof err !== 'object' || err === null) return false;
    if (this.etcd3?.isRecoverableError(err as Error)) return true;
    const name = (err as { name?: unknown }).name;
    if (name === 'BrokenCircuitError' || name === 'TaskCancelledError') return true;
    return err instanceof Error && TRANSIENT_MESSAGES.test(err.message);
  }

  private within<T>(ms: number, promise: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timeout: no answer within ${Math.round(ms)} ms`)),
        ms,
      );
      timer.unref();
      promise.then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }
}
