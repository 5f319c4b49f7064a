import type Redis from 'ioredis';
import { RedlockLockBackend } from 'nestjs-distributed-lock';
import { startRedisMasters, type RedisMastersTopology } from '../servers/redis-masters.topology';
import { freePort } from '../servers/server.process';
import type { ContractBackend } from '../support/test-backends';
import { keysContaining } from '../redis/redis-test.helpers';

/** Masters of every Redlock test: five, so that two may fail. */
export const MASTERS = 5;

/**
 * The Redlock entry of the backend contract: five masters of its own, started once for the
 * contract file. No fencing tokens, no FIFO handoff; a dead waiter holds nobody up (there is no
 * queue to be stuck in: a release wakes every waiter it recorded).
 */
export function redlockContractBackend(): ContractBackend {
  let topology: RedisMastersTopology | undefined;
  return {
    name: 'redlock',
    start: async () => {
      const started = await startRedisMasters(MASTERS);
      topology = started;
      return () => started.stop();
    },
    connect: () => {
      if (!topology) throw new Error('the redlock masters are not started');
      return new RedlockLockBackend({ urls: topology.urls });
    },
    deadWaiterBound: 0,
    ttlEndsGrant: true,
    fencing: false,
    fifoHandoff: false,
    unreachable: async () => {
      const commandTimeout = 500;
      const ports = await Promise.all([freePort(), freePort(), freePort()]);
      const address = `127.0.0.1:${ports[0]}`;
      const backend = new RedlockLockBackend({
        urls: ports.map((p) => `redis://127.0.0.1:${p}`),
        commandTimeout,
      });
      return { backend, commandTimeout, address, cause: /ECONNREFUSED 127\.0\.0\.1:\d+/ };
    },
  };
}

/** How many masters hold some Redis key containing `marker` (a lock key, or its waiters). */
export async function mastersHolding(clients: readonly Redis[], marker: string): Promise<number> {
  const found = await Promise.all(clients.map((c) => keysContaining(c, marker)));
  return found.filter((keys) => keys.length > 0).length;
}
