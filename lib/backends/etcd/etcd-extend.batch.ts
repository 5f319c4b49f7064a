import type { Etcd3, IRequestOp } from 'etcd3';
import type { EtcdHeldLock } from './etcd-held.registry';
import { firstKv, memberReadOp } from './etcd-txn.ops';
import { MAX_TXN_OPS } from './etcd.cleaner';
import type { EtcdRpc } from './etcd.rpc';

/** Parallel transactions of one batch. */
const CONCURRENCY = 8;

/**
 * Which of `locks` still have every member in etcd, on their session, with the create revision
 * they were granted at (an `extend` batch): linearizable reads in transactions of at most
 * {@link MAX_TXN_OPS} keys, a few in parallel.
 */
export async function readIntact(
  client: Etcd3,
  rpc: EtcdRpc,
  locks: readonly EtcdHeldLock[],
): Promise<Map<EtcdHeldLock, boolean>> {
  const chunks: EtcdHeldLock[][] = [];
  let current: EtcdHeldLock[] = [];
  let ops = 0;
  for (const lock of locks) {
    if (ops + lock.members.length > MAX_TXN_OPS && current.length > 0) {
      chunks.push(current);
      current = [];
      ops = 0;
    }
    current.push(lock);
    ops += lock.members.length;
  }
  chunks.push(current);

  const intact = new Map<EtcdHeldLock, boolean>();
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let chunk = chunks[next++]; chunk; chunk = chunks[next++]) {
      const reads: IRequestOp[] = chunk.flatMap((lock) => lock.members.map(memberReadOp));
      const response = await rpc.run('extend', (options) =>
        client.kv.txn({ success: reads }, options),
      );
      let at = 0;
      for (const lock of chunk) {
        intact.set(
          lock,
          lock.members.every((_, i) => {
            const kv = firstKv(response, at + i);
            return (
              kv !== undefined &&
              kv.lease === lock.session.leaseId &&
              Number(kv.create_revision) === lock.revisions[i]
            );
          }),
        );
        at += lock.members.length;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, chunks.length) }, worker));
  return intact;
}
