/** The `lock` label of a lock without a name. */
export const UNNAMED = 'unnamed';
/** The `lock` label of every name beyond the first `maxNames`. */
export const OTHER = 'other';

/**
 * Turns a lock's backend and name into metric labels, keeping at most `maxNames` distinct names:
 * a caller that names locks after raw keys must not create a series per key.
 */
export class LockLabels {
  private readonly names = new Map<string, { backend: string; lock: string }[]>();
  private distinct = 0;

  constructor(private readonly maxNames: number) {
    if (!Number.isInteger(maxNames) || maxNames < 1) {
      throw new TypeError(`metrics maxNames must be a positive integer, got ${String(maxNames)}`);
    }
  }

  /** The labels of a lock named `name` (or none) on `backend`; the same object for the same pair. */
  of(backend: string, name: string | undefined): { backend: string; lock: string } {
    let lock = name ?? UNNAMED;
    if (!this.names.has(lock)) {
      if (this.distinct >= this.maxNames) lock = OTHER;
      else this.distinct++;
    }
    let list = this.names.get(lock);
    if (!list) this.names.set(lock, (list = []));
    for (const labels of list) if (labels.backend === backend) return labels;
    const labels = { backend, lock };
    list.push(labels);
    return labels;
  }
}
