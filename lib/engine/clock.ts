/**
 * Monotonic milliseconds for deadlines: immune to wall-clock jumps, which would otherwise make a
 * holder believe it still owns a lock that already expired on the server. The global
 * `performance` (not node:perf_hooks' binding) so that jest's fake timers move it with timers.
 */
export function monotonicNow(): number {
  return performance.now();
}

/** Converts a monotonic instant to epoch ms, for values shown to users such as `expiresAt`. */
export function toEpoch(monotonic: number): number {
  return Date.now() + (monotonic - performance.now());
}
