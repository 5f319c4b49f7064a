/**
 * Parks a waiting acquire until the backend wakes it, its fallback timer fires, or one of the
 * abort signals fires. A wake-up that arrives while an attempt is in flight is remembered, so the
 * next park returns at once instead of sleeping through it.
 */
export class WakeWaiter {
  private woken = false;
  private resume: (() => void) | undefined;

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

  /** Throws the reason of the first aborted signal, if any. */
  throwIfAborted(): void {
    for (const signal of this.signals) signal.throwIfAborted();
  }

  /** Resolves on a wake-up or after `ms`; rejects with the abort reason if a signal fires. */
  park(ms: number): Promise<void> {
    this.throwIfAborted();
    if (this.woken) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const finish = (err?: unknown): void => {
        clearTimeout(timer);
        this.resume = undefined;
        for (const signal of this.signals) signal.removeEventListener('abort', onAbort);
        if (err === undefined) resolve();
        else reject(err);
      };
      const onAbort = (event: Event): void => finish((event.target as AbortSignal).reason);
      // Not unref'd: a script awaiting a lock must not exit while it waits (the wait is bounded).
      const timer = setTimeout(() => finish(), ms);
      this.resume = () => finish();
      for (const signal of this.signals) signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}
