import type { BackendHandoff, Unsubscribe } from '../lock-backend.interface';

/** What {@link EtcdWakeRegistry} calls: a wake-up, possibly carrying a handed-over lock. */
export type EtcdWakeListener = (handoff?: BackendHandoff) => void;

/** The `onWake` listeners of a backend, by owner token. */
export class EtcdWakeRegistry {
  private readonly listeners = new Map<string, Set<EtcdWakeListener>>();

  /** Adds `listener` for `token`; the returned function removes it. */
  subscribe(token: string, listener: EtcdWakeListener): Unsubscribe {
    let listeners = this.listeners.get(token);
    if (!listeners) {
      listeners = new Set();
      this.listeners.set(token, listeners);
    }
    listeners.add(listener);
    return () => {
      const current = this.listeners.get(token);
      if (!current) return;
      current.delete(listener);
      if (current.size === 0) this.listeners.delete(token);
    };
  }

  /** Whether anyone listens for `token` (a handoff is only worth making to a listener). */
  has(token: string): boolean {
    return this.listeners.has(token);
  }

  /** Calls every listener of `token` now. */
  wake(token: string, handoff?: BackendHandoff): void {
    const listeners = this.listeners.get(token);
    if (!listeners) return;
    for (const listener of [...listeners]) {
      try {
        listener(handoff);
      } catch {
        // A listener's failure must not stop the others.
      }
    }
  }

  /** Removes every listener (the backend is closing). */
  clear(): void {
    this.listeners.clear();
  }
}
