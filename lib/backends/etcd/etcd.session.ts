import type { Etcd3, ILeaseKeepAliveResponse } from 'etcd3';
import { EtcdRpc } from './etcd.rpc';

/** Why a session ended without being closed. */
export interface EtcdSessionLoss {
  readonly reason: string;
  readonly cause?: unknown;
}

/** Retry delay of a failed keep-alive, in ms (bounded further by the lease deadline). */
const KEEPALIVE_RETRY = 250;

/**
 * One etcd lease shared by every lock and queue entry of a backend, the `Session` of etcd's Go
 * `concurrency` package.
 *
 * Keep-alives run every TTL/3 on their own timer (unref'ed: a session never keeps the process
 * alive). The etcd3 client's own `Lease` is not used: it reports loss only after twice the TTL,
 * long after etcd has already deleted the keys and someone else may hold the lock.
 *
 * Loss is declared locally at `sent + TTL - margin`, where `sent` is the send time of the last
 * keep-alive etcd answered: etcd counts the TTL from when it received that keep-alive, later than
 * `sent`, so the local deadline always comes before etcd can expire the lease and hand its locks
 * to others. etcd answering TTL 0 (expired or revoked) is a loss at once.
 */
export class EtcdSession {
  /** Lease id as 16 hex digits, as used in key names. */
  readonly leaseHex: string;
  private expiresAt: number;
  private timer?: NodeJS.Timeout;
  private loss?: EtcdSessionLoss;
  private stopped = false;
  private inFlight = false;

  private constructor(
    private readonly client: Etcd3,
    private readonly rpc: EtcdRpc,
    /** Lease id, decimal, as etcd3 returns int64 values. */
    readonly leaseId: string,
    /** TTL etcd granted, in ms. */
    readonly ttl: number,
    sentAt: number,
    private readonly onLost: (session: EtcdSession, loss: EtcdSessionLoss) => void,
  ) {
    this.leaseHex = BigInt(leaseId).toString(16).padStart(16, '0');
    this.expiresAt = sentAt + ttl;
    this.schedule(sentAt + ttl / 3);
  }

  /**
   * Grants a lease of `ttlSeconds` and starts keeping it alive.
   *
   * @throws LockBackendError when etcd does not grant it within the rpc budget
   */
  static async open(
    client: Etcd3,
    rpc: EtcdRpc,
    operation: string,
    ttlSeconds: number,
    onLost: (session: EtcdSession, loss: EtcdSessionLoss) => void,
  ): Promise<EtcdSession> {
    const sentAt = performance.now();
    const granted = await rpc.run(operation, (options) =>
      client.leaseClient.leaseGrant({ TTL: ttlSeconds }, options),
    );
    const ttl = Number(granted.TTL) * 1000;
    if (!(ttl > 0)) {
      throw new Error(
        `etcd granted a lease with TTL ${granted.TTL}${granted.error ? `: ${granted.error}` : ''}`,
      );
    }
    return new EtcdSession(client, rpc, granted.ID, ttl, sentAt, onLost);
  }

  /** True until the session is lost or stopped. */
  get alive(): boolean {
    // Pure on purpose: callers iterate over their locks; the timer declares the loss itself.
    return !this.loss && !this.stopped && performance.now() < this.lossAt;
  }

  /** Monotonic ms until which the lease is known alive; `-Infinity` once lost or stopped. */
  get deadline(): number {
    return this.loss || this.stopped ? -Infinity : this.lossAt;
  }

  /** Remaining lease time as known locally, in ms (0 when lost). */
  remaining(): number {
    return this.alive ? Math.max(0, this.lossAt - performance.now()) : 0;
  }

  /** Declares the session lost (idempotent) and tells the backend once. */
  lose(loss: EtcdSessionLoss): void {
    if (this.loss || this.stopped) return;
    this.loss = loss;
    this.halt();
    this.onLost(this, loss);
  }

  /** Stops keep-alives and revokes the lease, deleting every key on it. Never rejects. */
  async revoke(): Promise<void> {
    this.stopped = true;
    this.halt();
    try {
      await this.rpc.run('close', (options) =>
        this.client.leaseClient.leaseRevoke({ ID: this.leaseId }, options),
      );
    } catch {
      // Already gone, or etcd is unreachable: then the lease expires by itself within its TTL,
      // because nothing keeps it alive any more.
    }
  }

  /**
   * Sends a keep-alive now (unless one is on the way): a lock found missing may mean the lease was
   * revoked, and the other locks of the session should hear about it without waiting for TTL/3.
   */
  probe(): void {
    if (this.loss || this.stopped || this.inFlight) return;
    this.halt();
    void this.keepAlive();
  }

  /** Where the local lease deadline sits: early by a margin that absorbs timer and clock jitter. */
  private get lossAt(): number {
    return this.expiresAt - Math.min(1_000, this.ttl / 10);
  }

  private halt(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(at: number): void {
    this.halt();
    if (this.loss || this.stopped) return;
    const when = Math.min(at, this.lossAt);
    this.timer = setTimeout(() => this.tick(), Math.max(0, when - performance.now()));
    this.timer.unref();
  }

  private tick(): void {
    this.timer = undefined;
    if (this.loss || this.stopped) return;
    if (performance.now() >= this.lossAt) {
      this.lose({ reason: 'no keep-alive answer before the session lease deadline' });
      return;
    }
    if (this.inFlight) {
      this.schedule(performance.now() + KEEPALIVE_RETRY);
      return;
    }
    void this.keepAlive();
  }

  private async keepAlive(): Promise<void> {
    this.inFlight = true;
    const sentAt = performance.now();
    try {
      const response = await this.sendKeepAlive();
      if (this.loss || this.stopped) return;
      // Past the local deadline, locks may already have been judged lost (`leaseDeadline()` read
      // after a stall) and their release skipped: a late answer must not bring the session back.
      if (performance.now() >= this.lossAt) {
        this.lose({ reason: 'the keep-alive answered after the session lease deadline' });
        return;
      }
      const granted = Number(response.TTL) * 1000;
      if (!(granted > 0)) {
        this.lose({ reason: 'etcd reports that the session lease expired or was revoked' });
        return;
      }
      this.expiresAt = Math.max(this.expiresAt, sentAt + granted);
      this.schedule(sentAt + this.ttl / 3);
    } catch {
      if (this.loss || this.stopped) return;
      this.schedule(performance.now() + Math.min(KEEPALIVE_RETRY, this.ttl / 6));
    } finally {
      this.inFlight = false;
    }
  }

  /** One keep-alive over a short-lived stream, bounded by the rpc budget. */
  private sendKeepAlive(): Promise<ILeaseKeepAliveResponse> {
    const budget = this.rpc.timeout;
    return new Promise<ILeaseKeepAliveResponse>((resolve, reject) => {
      let settled = false;
      let stream: { end(): void; cancel(): void } | undefined;
      const finish = (err: unknown, response?: ILeaseKeepAliveResponse): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        try {
          if (err === undefined) stream?.end();
          else stream?.cancel();
        } catch {
          // The stream is already closed.
        }
        if (err === undefined && response) resolve(response);
        else reject(err instanceof Error ? err : new Error(String(err)));
      };
      const timer = setTimeout(
        () => finish(new Error(`keep-alive got no answer within ${budget} ms`)),
        budget,
      );
      timer.unref();
      this.client.leaseClient.leaseKeepAlive({ deadline: Date.now() + budget }).then(
        (opened) => {
          stream = opened;
          // Listeners stay attached after settling so a late error is never an unhandled 'error'.
          opened.on('data', (response) => finish(undefined, response));
          opened.on('error', (err) => finish(err));
          opened.on('end', () => finish(new Error('keep-alive stream ended without an answer')));
          if (settled) {
            opened.cancel();
            return;
          }
          opened.write({ ID: this.leaseId });
        },
        (err: unknown) => finish(err),
      );
    });
  }
}
