/**
 * Splits `items` into consecutive chunks whose summed `cost` stays within `max` (an item that
 * alone costs more gets a chunk of its own). Backends split renewal batches by what one request
 * of their store can carry: Redis by keys per script, etcd by operations per transaction.
 */
export function chunkByCost<T>(items: readonly T[], cost: (item: T) => number, max: number): T[][] {
  const chunks: T[][] = [];
  let chunk: T[] = [];
  let used = 0;
  for (const item of items) {
    const c = cost(item);
    if (chunk.length > 0 && used + c > max) {
      chunks.push(chunk);
      chunk = [];
      used = 0;
    }
    chunk.push(item);
    used += c;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}
