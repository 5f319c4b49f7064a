interface Slot {
  readonly at: number;
  readonly id: string;
}

/**
 * Calls `onDue(id)` once the monotonic time `at` of an id has come, using one unref'ed timer for
 * any number of ids. Rescheduling an id (every `extend`) pushes a new heap slot and leaves the old
 * one to be skipped when it surfaces, so each change is O(log n); the heap is rebuilt whenever
 * stale slots outnumber live ids, which keeps memory proportional to the live ids.
 */
export class DeadlineQueue {
  private readonly due = new Map<string, number>();
  private heap: Slot[] = [];
  private timer?: NodeJS.Timeout;
  private timerAt = Infinity;

  constructor(private readonly onDue: (id: string) => void) {}

  /** Sets (or moves) the deadline of `id` to monotonic time `at` (ms, `performance.now()`). */
  schedule(id: string, at: number): void {
    this.due.set(id, at);
    this.push({ at, id });
    if (this.heap.length > 2 * this.due.size + 64) this.rebuild();
    this.arm();
  }

  /** Forgets `id`. */
  cancel(id: string): void {
    this.due.delete(id);
    if (this.due.size === 0) this.clear();
  }

  /** Forgets every id and stops the timer. */
  clear(): void {
    this.due.clear();
    this.heap = [];
    this.disarm();
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = performance.now();
    // Bounded by the heap size at entry: ids scheduled by onDue land in later rounds.
    for (
      let budget = this.heap.length;
      budget > 0 && this.heap.length > 0 && this.heap[0].at <= now;
      budget--
    ) {
      const slot = this.pop();
      if (this.due.get(slot.id) !== slot.at) continue;
      this.due.delete(slot.id);
      try {
        this.onDue(slot.id);
      } catch {
        // A failing handler must not stop the other deadlines.
      }
    }
    this.arm();
  }

  private arm(): void {
    while (this.heap.length > 0 && this.due.get(this.heap[0].id) !== this.heap[0].at) this.pop();
    if (this.heap.length === 0) {
      this.disarm();
      return;
    }
    const at = this.heap[0].at;
    if (this.timer && this.timerAt <= at) return;
    this.disarm();
    this.timerAt = at;
    const delay = Math.min(Math.max(0, at - performance.now()), 2_147_483_647);
    this.timer = setTimeout(() => this.fire(), delay);
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  private rebuild(): void {
    this.heap = [];
    for (const [id, at] of this.due) this.push({ at, id });
  }

  private push(slot: Slot): void {
    const heap = this.heap;
    heap.push(slot);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent].at <= heap[i].at) break;
      [heap[parent], heap[i]] = [heap[i], heap[parent]];
      i = parent;
    }
  }

  private pop(): Slot {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop() as Slot;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < heap.length && heap[left].at < heap[smallest].at) smallest = left;
        if (right < heap.length && heap[right].at < heap[smallest].at) smallest = right;
        if (smallest === i) break;
        [heap[smallest], heap[i]] = [heap[i], heap[smallest]];
        i = smallest;
      }
    }
    return top;
  }
}
