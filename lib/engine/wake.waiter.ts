import { monotonicNow } from './clock';

/**
 * Parks a waiting acquire until the backend wakes it, its fallback time comes, or one of the
 * abort signals fires. A wake-up that arrives while an attempt is in flight is remembered, so the
 * next park returns at once instead of sleeping through it.
 */
export class WakeWaiter {
  private woken = false;
  private resume: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private parkedUntil = Infinity;

  constructor(private readonly signals: readonly AbortSignal[]) {}

  /** Called by the backend's wake-up subscription. */
  wake(): void {
    this.woken = true;
    this.resume?.();
  }

  /** Forgets earlier wake-ups; call right before sending an attempt. */
  reset(): void {
    this.woken = false;
  }

  /** Brings the end of the current park forward to monotonic `at`, if it is earlier. */
  recheckBy(at: number): void {
    if (!this.resume || at >= this.parkedUntil) return;
    this.arm(at);
  }

  /** Throws the reason of the first aborted signal, if any. */
  throwIfAborted(): void {
    for (const signal of this.signals) signal.throwIfAborted();
  }

  /**
   * Resolves on a wake-up or at monotonic `until` (at least 1 ms from now); rejects with the
   * abort reason if a signal fires.
   */
  park(until: number): Promise<void> {
    this.throwIfAborted();
    if (this.woken) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const finish = (err?: unknown): void => {
        clearTimeout(this.timer);
        this.timer = undefined;
        this.resume = undefined;
        this.parkedUntil = Infinity;
        for (const signal of this.signals) signal.removeEventListener('abort', onAbort);
        if (err === undefined) resolve();
        else reject(err);
      };
      const onAbort = (event: Event): void => finish((event.target as AbortSignal).reason);
      this.resume = () => finish();
      this.arm(until);
      for (const signal of this.signals) signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private arm(until: number): void {
    clearTimeout(this.timer);
    this.parkedUntil = until;
    // Not unref'd: a script awaiting a lock must not exit while it waits (the wait is bounded,
    // and bounded by MAX_DURATION, so the delay never overflows Node's timer).
    this.timer = setTimeout(() => this.resume?.(), Math.max(1, Math.ceil(until - monotonicNow())));
  }
}
