/**
 * The waiter that dies in the dead-waiter scenario: it opens our library in its own process (own
 * connections, own etcd session), queues for a lock when told, and is then SIGKILLed by the
 * orchestrator, so nothing of it says goodbye to the backend.
 */
import type { BenchEnv } from '../peers/lock-adapter.interface';
import { serveParent } from '../support/child.pool';
import { FaultTuning, OpenLockService, openLockService } from '../support/lock-service.factory';

let service: OpenLockService | undefined;

serveParent({
  open: async (payload) => {
    const { backend, env, tuning } = payload as {
      backend: 'redis' | 'etcd';
      env: BenchEnv;
      tuning: FaultTuning;
    };
    service = await openLockService(backend, env, tuning);
    // Warm the connections (and the etcd session) so that queueing is one request.
    await (
      await service.locks.acquire(`bench:dead-waiter:warm:${process.pid}`, { wait: 0 })
    ).release();
    return process.pid;
  },
  queue: (payload) => {
    if (!service) throw new Error('queue before open');
    const { key, ttl, wait } = payload as { key: string; ttl: number; wait: number };
    // Not awaited: the process is killed while this acquire waits.
    void service.locks.acquire(key, { ttl, wait }).catch(() => undefined);
    return Promise.resolve(true);
  },
  exit: async () => {
    await service?.close();
    return true;
  },
});
