/** Small, dependency-free statistics for the benchmark: percentiles, medians, rounding. */

/** Percentile `p` (0..100) of `values`, linear interpolation between closest ranks; NaN if empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return percentileOfSorted(sorted, p);
}

/** Like {@link percentile}, for an array already sorted ascending. */
export function percentileOfSorted(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  if (sorted.length === 1) return sorted[0];
  const rank = (Math.min(100, Math.max(0, p)) / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

/** Median of `values` (NaN if empty). */
export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** p50 / p99 / max of a latency sample, in the sample's unit. */
export interface LatencySummary {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

/** Summarises a latency sample. */
export function summarize(values: readonly number[]): LatencySummary {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: percentileOfSorted(sorted, 50),
    p99: percentileOfSorted(sorted, 99),
    max: sorted.length > 0 ? sorted[sorted.length - 1] : Number.NaN,
  };
}

/** Rounds to `digits` significant digits (keeps JSON small); non-finite values become null. */
export function sig(value: number, digits = 3): number | null {
  if (!Number.isFinite(value)) return null;
  if (value === 0) return 0;
  return Number(value.toPrecision(digits));
}

/** `a / b`, or NaN when either side is missing or b is 0. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number {
  if (a === null || a === undefined || b === null || b === undefined || b === 0) return Number.NaN;
  return a / b;
}

/**
 * Median over rounds of `a[r] / b[r]`, for two contenders measured in the same interleaved rounds
 * (a noisy moment hits both sides of one round alike); NaN when no round has both.
 */
export function medianRoundRatio(
  a: readonly number[] | undefined,
  b: readonly number[] | undefined,
): number {
  if (!a || !b) return Number.NaN;
  const ratios: number[] = [];
  for (let r = 0; r < Math.min(a.length, b.length); r++) {
    const q = ratio(a[r], b[r]);
    if (Number.isFinite(q)) ratios.push(q);
  }
  return median(ratios);
}
