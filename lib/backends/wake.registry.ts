import type { BackendHandoff, Unsubscribe, WakeListener } from './lock-backend.interface';

export type { WakeListener } from './lock-backend.interface';

/**
 * The `onWake` listeners of one backend, by waiter token. Shared by every backend so that memory
 * follows the live waiters only, never the keys ever seen.
 *
 * A token's entry is the listener itself for the usual single registration, an array (one
 * element per registration, duplicates allowed) otherwise: no Set or wrapper per waiter on the
 * acquire path.
 */
export class WakeRegistry {
  private readonly listeners = new Map<string, WakeListener | WakeListener[]>();

  /** Number of tokens with at least one listener. */
  get size(): number {
    return this.listeners.size;
  }

  /** Adds `listener` for `token`; the returned function removes this registration, once. */
  add(token: string, listener: WakeListener): Unsubscribe {
    const current = this.listeners.get(token);
    if (current === undefined) this.listeners.set(token, listener);
    else if (Array.isArray(current)) current.push(listener);
    else this.listeners.set(token, [current, listener]);
    let registered = true;
    return () => {
      if (!registered) return;
      registered = false;
      this.remove(token, listener);
    };
  }

  /** Whether anyone listens for `token` (a handoff is only worth offering to a listener). */
  has(token: string): boolean {
    return this.listeners.has(token);
  }

  /** Calls every listener of `token` now; one failing listener does not stop the others. */
  wake(token: string, handoff?: BackendHandoff, recheckAfter?: number): void {
    const current = this.listeners.get(token);
    if (current === undefined) return;
    // A copy: a listener may unsubscribe (itself or another) while we iterate.
    for (const listener of Array.isArray(current) ? [...current] : [current]) {
      try {
        listener(handoff, recheckAfter);
      } catch {
        // A wake-up is a hint; the waiter still re-checks at its fallback time.
      }
    }
  }

  /**
   * Tells every listener to re-check within `recheckAfter` ms (wake-ups may have been lost for
   * all of them: a subscription dropped).
   */
  recheckAll(recheckAfter: number): void {
    for (const token of [...this.listeners.keys()]) this.wake(token, undefined, recheckAfter);
  }

  /** Removes every listener (the backend is closing). */
  clear(): void {
    this.listeners.clear();
  }

  private remove(token: string, listener: WakeListener): void {
    const current = this.listeners.get(token);
    if (current === listener) {
      this.listeners.delete(token);
    } else if (Array.isArray(current)) {
      const index = current.indexOf(listener);
      if (index !== -1) current.splice(index, 1);
      if (current.length === 1) this.listeners.set(token, current[0]);
      else if (current.length === 0) this.listeners.delete(token);
    }
  }
}
