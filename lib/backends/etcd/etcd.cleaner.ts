import type { Etcd3, IRequestOp } from 'etcd3';
import { EtcdRpc } from './etcd.rpc';
import type { EtcdSession } from './etcd.session';

/** etcd's default `--max-txn-ops`: the most operations one transaction may carry. */
export const MAX_TXN_OPS = 128;

const RETRY_MIN = 100;
const RETRY_MAX = 2_000;

interface Doomed {
  readonly member: Buffer;
  readonly session: EtcdSession;
}

/**
 * Deletes member keys in the background, batched, retrying until etcd confirms or their session
 * ends (its lease then takes them along). Used wherever a key must go although nobody waits for
 * the answer: a lock whose per-lock ttl ran out, an abandoned queue entry, a failed release, and
 * keys an ambiguous (timed-out) acquire may have written.
 *
 * A token is never deleted behind the back of a new attempt that reuses it: {@link settle} takes
 * it out of the queue and waits for any batch already on the wire before the attempt is sent.
 */
export class EtcdCleaner {
  private readonly pending = new Map<string, Map<string, Doomed>>();
  private readonly sending = new Map<string, Promise<void>>();
  private timer?: NodeJS.Timeout;
  private retryDelay = RETRY_MIN;
  private flushing = false;
  private closed = false;

  constructor(
    private readonly client: Etcd3,
    private readonly rpc: EtcdRpc,
  ) {}

  /** Queues `members` of `token` for deletion. */
  add(token: string, members: readonly Buffer[], session: EtcdSession): void {
    if (this.closed || !session.alive || members.length === 0) return;
    let byKey = this.pending.get(token);
    if (!byKey) {
      byKey = new Map();
      this.pending.set(token, byKey);
    }
    for (const member of members) byKey.set(member.toString('latin1'), { member, session });
    this.arm(0);
  }

  /** Takes `token` out of the queue and waits until no deletion of it is on the wire. */
  async settle(token: string): Promise<void> {
    this.pending.delete(token);
    const inFlight = this.sending.get(token);
    if (inFlight) {
      await inFlight.catch(() => undefined);
      this.pending.delete(token);
    }
  }

  /** Forgets the keys of a session that ended: they went with its lease. */
  dropSession(session: EtcdSession): void {
    for (const [token, byKey] of this.pending) {
      for (const [id, doomed] of byKey) if (doomed.session === session) byKey.delete(id);
      if (byKey.size === 0) this.pending.delete(token);
    }
  }

  /** Stops for good. */
  close(): void {
    this.closed = true;
    this.pending.clear();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(delay: number): void {
    if (this.timer || this.flushing || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, delay);
    this.timer.unref();
  }

  private async flush(): Promise<void> {
    if (this.flushing || this.closed) return;
    this.flushing = true;
    let failed = false;
    try {
      const batch: { token: string; id: string; doomed: Doomed }[] = [];
      collect: for (const [token, byKey] of this.pending) {
        for (const [id, doomed] of byKey) {
          byKey.delete(id);
          if (doomed.session.alive) batch.push({ token, id, doomed });
          if (batch.length >= MAX_TXN_OPS) break collect;
        }
      }
      for (const [token, byKey] of this.pending) if (byKey.size === 0) this.pending.delete(token);
      if (batch.length === 0) return;
      const ops: IRequestOp[] = batch.map(({ doomed }) => ({
        request_delete_range: { key: doomed.member },
      }));
      const sent = this.rpc
        .run('release', (options) => this.client.kv.txn({ success: ops }, options))
        .then(() => undefined);
      const tokens = new Set(batch.map((entry) => entry.token));
      for (const token of tokens) this.sending.set(token, sent);
      try {
        await sent;
        this.retryDelay = RETRY_MIN;
      } catch {
        failed = true;
        for (const { token, id, doomed } of batch) this.requeue(token, id, doomed);
      } finally {
        for (const token of tokens)
          if (this.sending.get(token) === sent) this.sending.delete(token);
      }
    } finally {
      this.flushing = false;
    }
    if (this.pending.size > 0) {
      this.arm(failed ? this.retryDelay : 0);
      if (failed) this.retryDelay = Math.min(RETRY_MAX, this.retryDelay * 2);
    }
  }

  private requeue(token: string, id: string, doomed: Doomed): void {
    if (this.closed || !doomed.session.alive) return;
    let byKey = this.pending.get(token);
    if (!byKey) {
      byKey = new Map();
      this.pending.set(token, byKey);
    }
    if (!byKey.has(id)) byKey.set(id, doomed);
  }
}
