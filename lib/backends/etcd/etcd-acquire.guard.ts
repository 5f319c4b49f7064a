import { DeadlineQueue } from './etcd-deadline.queue';
import type { EtcdSession } from './etcd.session';

/** How long etcd may still apply a request after reporting it failed, in ms (beyond the budget). */
const DELAYED_APPLY_GRACE = 10_000;

/** Member keys that a failed acquire may still write, and the session it wrote them on. */
export interface EtcdGuard {
  readonly members: readonly Buffer[];
  readonly session: EtcdSession;
}

/**
 * Covers acquires whose outcome is unknown. A request that timed out or lost its connection may
 * still be applied by etcd later (it sits in a leader's log, or a client retry is on the wire), and
 * would then leave member keys that nobody tracks. So a failed acquire leaves a guard on the keys
 * it may write; once no attempt of its token is running and a grace period that outlasts any
 * delayed apply has passed, `onDue` deletes them unless the token tracks them again by then.
 *
 * Also counts the attempts of each token that are running, which other parts consult so they
 * never delete keys behind the back of an attempt in flight.
 */
export class EtcdAcquireGuard {
  private readonly running = new Map<string, number>();
  private readonly guards = new Map<string, EtcdGuard>();
  private readonly deadlines = new DeadlineQueue((token) => this.due(token));

  /**
   * @param budget the rpc budget in ms: how long a running attempt may still take
   * @param onDue deletes the guarded keys (unless the token tracks them again)
   */
  constructor(
    private readonly budget: number,
    private readonly onDue: (token: string, guard: EtcdGuard) => void,
  ) {}

  /** Marks an attempt of `token` as running. */
  enter(token: string): void {
    this.running.set(token, (this.running.get(token) ?? 0) + 1);
  }

  /** Marks an attempt of `token` as finished. */
  exit(token: string): void {
    const count = (this.running.get(token) ?? 1) - 1;
    if (count > 0) this.running.set(token, count);
    else this.running.delete(token);
  }

  /** Whether an attempt of `token` is running. */
  isRunning(token: string): boolean {
    return this.running.has(token);
  }

  /** Guards `members`, which a failed attempt of `token` may still write on `session`. */
  add(token: string, members: readonly Buffer[], session: EtcdSession): void {
    this.guards.set(token, { members, session });
    this.deadlines.schedule(token, performance.now() + this.budget + DELAYED_APPLY_GRACE);
  }

  /** The guard of `token`, if any. */
  get(token: string): EtcdGuard | undefined {
    return this.guards.get(token);
  }

  /** Drops the guards of a session that ended: its lease took the keys along. */
  dropSession(session: EtcdSession): void {
    for (const [token, guard] of [...this.guards]) {
      if (guard.session !== session) continue;
      this.guards.delete(token);
      this.deadlines.cancel(token);
    }
  }

  /** Drops every guard and stops the timer (the backend is closing). */
  clear(): void {
    this.guards.clear();
    this.deadlines.clear();
  }

  private due(token: string): void {
    const guard = this.guards.get(token);
    if (!guard) return;
    if (this.running.has(token)) {
      // An attempt of the token is writing these keys right now; look again after its budget.
      this.deadlines.schedule(token, performance.now() + this.budget);
      return;
    }
    this.guards.delete(token);
    this.onDue(token, guard);
  }
}
