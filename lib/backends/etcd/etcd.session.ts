import type { ILeaseKeepAliveResponse, ITxnResponse } from 'etcd3';
import { deleteOp, MAX_TXN_OPS } from './etcd.keys';
import { EtcdCallOptions, EtcdRpc } from './etcd.rpc';

/** Why a session ended without being closed. */
export interface EtcdSessionLoss {
  readonly reason: string;
  readonly cause?: unknown;
}

/** Retry delay of a failed keep-alive, ms (bounded further by the lease deadline). */
const KEEPALIVE_RETRY = 250;

/**
 * One etcd lease shared by every member key of a backend (the `Session` of etcd's Go
 * `concurrency` package). It owns the keys on its lease:
 *
 * - Keep-alives every TTL/3 on an unref'ed timer (etcd3's own `Lease` reports loss only after
 *   twice the TTL, long after etcd deleted the keys).
 * - Loss is declared locally at `sent + TTL - margin`, `sent` being the send time of the last
 *   answered keep-alive: etcd counts the TTL from when it received it, later, so the holder hears
 *   of the loss before etcd can hand its locks to anyone. A TTL of 0 in the answer is a loss at
 *   once, and so is an answer arriving after the local deadline (locks may already have been
 *   judged lost by `leaseDeadline()`).
 * - Nothing on a live lease expires, so a member the backend failed to delete must still go: it is
 *   "owed", and deleted after each answered keep-alive until that succeeds or the lease ends.
 */
export class EtcdSession {
  /** Lease id as 16 hex digits, as used in member keys. */
  readonly leaseHex: string;
  private expiresAt: number;
  private timer?: NodeJS.Timeout;
  private ended = false;
  private inFlight = false;
  private readonly owed = new Map<string, Buffer>();

  private constructor(
    private readonly rpc: EtcdRpc,
    /** Lease id, decimal (etcd3's int64 form). */
    readonly leaseId: string,
    /** TTL etcd granted, ms. */
    readonly ttl: number,
    sentAt: number,
    private readonly onLost: (session: EtcdSession, loss: EtcdSessionLoss) => void,
  ) {
    this.leaseHex = BigInt(leaseId).toString(16).padStart(16, '0');
    this.expiresAt = sentAt + ttl;
    this.schedule(sentAt + ttl / 3);
  }

  /** Grants a lease of `ttlSeconds` and keeps it alive. @throws LockBackendError */
  static async open(
    rpc: EtcdRpc,
    ttlSeconds: number,
    onLost: (session: EtcdSession, loss: EtcdSessionLoss) => void,
  ): Promise<EtcdSession> {
    const sentAt = performance.now();
    const granted = await rpc.run('acquire', (options) =>
      rpc.client.leaseClient.leaseGrant({ TTL: ttlSeconds }, options),
    );
    const ttl = Number(granted.TTL) * 1000;
    if (!(ttl > 0)) throw new Error(`etcd granted a lease with TTL ${granted.TTL}`);
    return new EtcdSession(rpc, granted.ID, ttl, sentAt, onLost);
  }

  /** True until lost or revoked. Pure: the timer declares the loss. */
  get alive(): boolean {
    return !this.ended && performance.now() < this.lossAt;
  }

  /** Monotonic ms until which the lease is known alive; `-Infinity` once ended. */
  get deadline(): number {
    return this.ended ? -Infinity : this.lossAt;
  }

  /** Remaining lease time as known locally, ms. */
  remaining(): number {
    return this.alive ? this.lossAt - performance.now() : 0;
  }

  /** Declares the session lost, once, and tells the backend. */
  lose(loss: EtcdSessionLoss): void {
    if (this.ended) return;
    this.end();
    this.onLost(this, loss);
  }

  /** Stops keep-alives and revokes the lease, deleting every key on it. Never rejects. */
  async revoke(): Promise<void> {
    this.end();
    await this.rpc
      .run('close', (options) =>
        this.rpc.client.leaseClient.leaseRevoke({ ID: this.leaseId }, options),
      )
      // Unreachable: nothing keeps the lease alive any more, so it expires within its TTL.
      .catch(() => undefined);
  }

  /** Sends a keep-alive now: a lock found missing may mean that the lease was revoked. */
  probe(): void {
    if (this.ended || this.inFlight) return;
    clearTimeout(this.timer);
    void this.keepAlive();
  }

  /** Deletes members of this lease now; on failure they are owed (see the class comment). */
  async delete(operation: string, members: readonly Buffer[]): Promise<ITxnResponse> {
    try {
      return await this.rpc.txn(operation, { success: members.map(deleteOp) });
    } catch (err) {
      this.owe(members);
      throw err;
    }
  }

  /** Members to delete for sure, later (see the class comment). */
  owe(members: readonly Buffer[]): void {
    if (this.ended) return;
    for (const member of members) this.owed.set(member.toString('latin1'), member);
  }

  /** Takes back members a new attempt writes again. */
  forgive(members: readonly Buffer[]): void {
    for (const member of members) this.owed.delete(member.toString('latin1'));
  }

  /** The local deadline: early by a margin for timer and clock jitter. */
  private get lossAt(): number {
    return this.expiresAt - Math.min(1_000, this.ttl / 10);
  }

  private end(): void {
    this.ended = true;
    this.owed.clear();
    clearTimeout(this.timer);
  }

  private schedule(at: number): void {
    clearTimeout(this.timer);
    if (this.ended) return;
    const delay = Math.max(0, Math.min(at, this.lossAt) - performance.now());
    this.timer = setTimeout(() => this.tick(), delay);
    this.timer.unref();
  }

  private tick(): void {
    if (this.ended) return;
    if (performance.now() >= this.lossAt) {
      this.lose({ reason: 'no keep-alive answer before the session lease deadline' });
    } else if (this.inFlight) {
      this.schedule(performance.now() + KEEPALIVE_RETRY);
    } else {
      void this.keepAlive();
    }
  }

  private async keepAlive(): Promise<void> {
    this.inFlight = true;
    const sentAt = performance.now();
    let granted: number;
    try {
      const response = await this.rpc.run('keep-alive', (options) => this.keepAliveOnce(options));
      granted = Number(response.TTL) * 1000;
    } catch {
      this.schedule(performance.now() + Math.min(KEEPALIVE_RETRY, this.ttl / 6));
      return;
    } finally {
      this.inFlight = false;
    }
    if (this.ended) return;
    if (performance.now() >= this.lossAt) {
      this.lose({ reason: 'the keep-alive answered after the session lease deadline' });
    } else if (!(granted > 0)) {
      this.lose({ reason: 'etcd reports that the session lease expired or was revoked' });
    } else {
      this.expiresAt = Math.max(this.expiresAt, sentAt + granted);
      this.schedule(sentAt + this.ttl / 3);
      void this.sweep();
    }
  }

  /** One keep-alive over a short-lived stream, which its gRPC deadline ends at the latest. */
  private async keepAliveOnce(options: EtcdCallOptions): Promise<ILeaseKeepAliveResponse> {
    const stream = await this.rpc.client.leaseClient.leaseKeepAlive(options);
    return new Promise((resolve, reject) => {
      stream.on('data', (response: ILeaseKeepAliveResponse) => {
        stream.end();
        resolve(response);
      });
      stream.on('error', reject);
      stream.on('end', () => reject(new Error('keep-alive stream ended without an answer')));
      stream.write({ ID: this.leaseId });
    });
  }

  private async sweep(): Promise<void> {
    const batch = [...this.owed.entries()].slice(0, MAX_TXN_OPS);
    if (batch.length === 0) return;
    try {
      await this.rpc.txn('release', { success: batch.map(([, member]) => deleteOp(member)) });
      for (const [id, member] of batch) if (this.owed.get(id) === member) this.owed.delete(id);
    } catch {
      // Owed still: the next answered keep-alive tries again.
    }
  }
}
