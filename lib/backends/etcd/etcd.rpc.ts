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
  /leader changed|no leader|request timed out|too many requests|not capable|unhealthy cluster|server is stopping|timeout/i;

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
 * request the backend sends is idempotent. Every failure leaves as a `LockBackendError` that
 * names the hosts and the real cause (see {@link EtcdRpc.explain}).
 */
export class EtcdRpc {
  constructor(
    readonly client: Etcd3,
    private readonly etcd3: Etcd3Exports | undefined,
    /** Budget per call, ms. */
    readonly timeout: number,
    /** Where the client connects, for messages. */
    private readonly endpoint: string,
  ) {}

  /** One transaction, bounded. */
  txn(operation: string, request: ITxnRequest): Promise<ITxnResponse> {
    return this.run(operation, (options) => this.client.kv.txn(request, options));
  }

  /**
   * One linearizable read, bounded: proves that the cluster answers with a quorum. As for
   * `etcdctl endpoint health`, a permission denial is an answer too: the backend's user may read
   * only the backend's own keys.
   */
  async ping(): Promise<void> {
    await this.run('ping', (options) =>
      this.client.kv
        .range({ key: Buffer.from('health'), keys_only: true, limit: 1 }, options)
        .catch((err: unknown) => {
          if (!(err instanceof Error && /permission denied/i.test(err.message))) throw err;
        }),
    );
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
          const { message, cause } = this.explain(err);
          throw new LockBackendError('etcd', operation, message, {
            cause,
            endpoint: this.endpoint,
          });
        }
      }
      await sleep(
        Math.min(this.timeout - (performance.now() - start), 25 * 2 ** Math.min(tries, 4)),
      );
    }
    const known = last === undefined ? undefined : this.explain(last);
    const detail = known ? ` (last error: ${known.message})` : '';
    throw new LockBackendError('etcd', operation, `no answer within ${this.timeout} ms${detail}`, {
      cause: known?.cause,
      endpoint: this.endpoint,
    });
  }

  private isTransient(err: unknown): boolean {
    if (!(err instanceof Error)) return false;
    if (this.etcd3?.isRecoverableError(err)) return true;
    if (err.name === 'TaskCancelledError') return true;
    return TRANSIENT.test(err.message);
  }

  /**
   * The message and cause to report for `err`. etcd3 calls each host through a circuit breaker
   * (cockatiel) which, after 3 failures in a row, fails calls for 5 s with only "Execution
   * prevented because the circuit breaker is open"; this reports instead what opened it (the
   * breaker's `lastFailure`), for each host concerned. etcd3 1.x keeps its breakers in its
   * connection pool, not public API: read defensively, naming the hosts in any case.
   */
  private explain(err: unknown): { message: string; cause: unknown } {
    if (!(err instanceof Error && 'isBrokenCircuitError' in err)) {
      return { message: errorMessage(err), cause: err };
    }
    const open = openBreakers(this.client);
    const hosts = open.map(({ host }) => host).join(', ') || this.endpoint;
    const causes = open.map(({ host, error }) =>
      open.length > 1 ? `${host}: ${errorMessage(error)}` : errorMessage(error),
    );
    const paused = `etcd3 pauses calls to ${hosts} after repeated failures`;
    return {
      message: causes.length > 0 ? `${causes.join('; ')} (${paused})` : `${paused}, cause unknown`,
      cause: open[0]?.error ?? err,
    };
  }
}

/** The hosts of an etcd3 1.x client whose breaker is not closed, with the failure that opened it. */
function openBreakers(client: Etcd3): { host: string; error: unknown }[] {
  type Host = { host?: unknown; faultHandling?: { state?: unknown; lastFailure?: unknown } };
  const hosts = (client as unknown as { pool?: { hosts?: unknown } }).pool?.hosts;
  if (!Array.isArray(hosts)) return [];
  return (hosts as Host[]).flatMap(({ host, faultHandling }) => {
    const failure = faultHandling?.lastFailure as { error?: unknown } | undefined;
    // cockatiel's CircuitState.Closed is 0.
    if (typeof host !== 'string' || faultHandling?.state === 0 || !failure?.error) return [];
    return [{ host, error: failure.error }];
  });
}
