import { errorMessage } from '../../errors/error.message';
import type { Etcd3, ITxnRequest, ITxnResponse } from 'etcd3';
import { LockBackendError } from '../../errors/lock-backend.error';
import { sleep, withTimeout } from '../backend.timers';
import type { Etcd3Exports } from './etcd-client.loader';

/** Per-call gRPC options: an absolute deadline in epoch ms. */
export interface EtcdCallOptions {
  readonly deadline: number;
}

/** etcd errors that say "not now" rather than "never": worth another try within the budget. */
const TRANSIENT =
  /leader changed|no leader|request timed out|too many requests|not capable|unhealthy cluster|server is stopping|broken circuit|timeout/i;

const MAX_TRIES = 50;

/** Whether the error says that the lease named in a request no longer exists. */
export function isLeaseNotFound(err: unknown): boolean {
  const cause = err instanceof LockBackendError ? err.cause : err;
  return (
    cause instanceof Error &&
    /requested lease not found|lease .* is expired or revoked/i.test(cause.message)
  );
}

/**
 * Bounded etcd calls. The etcd3 client retries and fails over by itself but has no overall
 * deadline, and does not retry a few errors of a leader election; here each call gets one budget
 * (`commandTimeout`) with a gRPC deadline and a local timer (in case the client waits somewhere
 * without one) inside it, and transient errors are retried while it lasts. Safe because every
 * request the backend sends is idempotent.
 */
export class EtcdRpc {
  constructor(
    readonly client: Etcd3,
    private readonly etcd3: Etcd3Exports | undefined,
    /** Budget per call, ms. */
    readonly timeout: number,
  ) {}

  /** One transaction, bounded. */
  txn(operation: string, request: ITxnRequest): Promise<ITxnResponse> {
    return this.run(operation, (options) => this.client.kv.txn(request, options));
  }

  /** @throws LockBackendError with the last failure as `cause` */
  async run<T>(operation: string, call: (options: EtcdCallOptions) => Promise<T>): Promise<T> {
    const start = performance.now();
    let last: unknown;
    for (let tries = 0; tries < MAX_TRIES; tries++) {
      const left = this.timeout - (performance.now() - start);
      if (left <= 0) break;
      try {
        const timeout = (): Error => new Error(`timeout after ${Math.round(left)} ms`);
        return await withTimeout(call({ deadline: Date.now() + left }), left, timeout);
      } catch (err) {
        last = err;
        if (!this.isTransient(err)) {
          throw new LockBackendError('etcd', operation, errorMessage(err), { cause: err });
        }
      }
      await sleep(
        Math.min(this.timeout - (performance.now() - start), 25 * 2 ** Math.min(tries, 4)),
      );
    }
    const detail = last === undefined ? '' : ` (last error: ${errorMessage(last)})`;
    throw new LockBackendError('etcd', operation, `no answer within ${this.timeout} ms${detail}`, {
      cause: last,
    });
  }

  private isTransient(err: unknown): boolean {
    if (!(err instanceof Error)) return false;
    if (this.etcd3?.isRecoverableError(err)) return true;
    if (err.name === 'BrokenCircuitError' || err.name === 'TaskCancelledError') return true;
    return TRANSIENT.test(err.message);
  }
}
