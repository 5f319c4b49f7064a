/** A promise with its resolver, for making concurrent calls meet at a known point. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Sleeps `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Rejects with `label` if `promise` has not settled within `ms`: turns a would-be hang into a
 * failure with a reason. Not a speed assertion: the bounds are far above the expected times.
 */
export async function within<T>(ms: number, promise: Promise<T>, label: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label}: not settled within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `predicate` until true; bounded by `ms` and by 1000 rounds. */
export async function eventually(
  predicate: () => boolean | Promise<boolean>,
  ms: number,
  label: string,
): Promise<void> {
  const deadline = Date.now() + ms;
  for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
    if (await predicate()) return;
    await sleep(Math.max(5, ms / 200));
  }
  throw new Error(`${label}: not true within ${ms} ms`);
}

/** Resolves with the elapsed ms of `promise`, whether it resolves or rejects. */
export async function timed<T>(
  promise: Promise<T>,
): Promise<{ ms: number; value?: T; error?: unknown }> {
  const start = Date.now();
  try {
    const value = await promise;
    return { ms: Date.now() - start, value };
  } catch (error) {
    return { ms: Date.now() - start, error };
  }
}
