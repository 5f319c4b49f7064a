/**
 * One-shot wake-ups by key, for the raw floors: a waiter `listen`s before retrying, a release
 * notification `wake`s every listener of that key once. Each listen also resolves after
 * `fallbackMs`, so a lost notification delays a waiter but never strands it.
 */
export class KeyedWakeups {
  private readonly listeners = new Map<string, Set<() => void>>();

  constructor(private readonly fallbackMs: number) {}

  /** Resolves `woken` on the next `wake(key)` or after the fallback; `cancel` stops listening. */
  listen(key: string): { woken: Promise<void>; cancel: () => void } {
    let timer: NodeJS.Timeout | undefined;
    let listener: () => void = () => undefined;
    const woken = new Promise<void>((resolve) => {
      listener = () => {
        clearTimeout(timer);
        resolve();
      };
      timer = setTimeout(() => {
        this.listeners.get(key)?.delete(listener);
        resolve();
      }, this.fallbackMs);
    });
    let set = this.listeners.get(key);
    if (!set) {
      set = new Set();
      this.listeners.set(key, set);
    }
    set.add(listener);
    return {
      woken,
      cancel: () => {
        clearTimeout(timer);
        this.listeners.get(key)?.delete(listener);
      },
    };
  }

  /** Wakes, once, everyone listening on `key`. */
  wake(key: string): void {
    const listeners = this.listeners.get(key);
    if (!listeners) return;
    this.listeners.delete(key);
    for (const listener of listeners) listener();
  }
}
