import type { INestApplication } from '@nestjs/common';
import type { LockService } from 'nestjs-distributed-lock';
import { within } from '../../support/async.helpers';
import { createLockApp } from '../../support/test-app';
import { stillRunning } from '../runtime/lab.reaper';
import { labBackend, LabServer } from './lab-backend.registry';

/**
 * The lab's own topology faults, one by one, outside a run: each must really move the role it
 * is about (a new Cluster primary for the lab's slot, a new etcd leader), and the topology must
 * then grant again, with a fencing token above every earlier one. The long run
 * (`npm run test:faults`) drives the same faults under load; this keeps them honest in CI.
 */
describe.each(['redis-cluster', 'etcd-cluster'])('lab topology faults on %s', (name) => {
  const entry = labBackend(name);
  let server: LabServer | undefined;
  let app: INestApplication | undefined;
  let locks: LockService;

  beforeAll(async () => {
    server = await entry.start();
    if (!server.clientConfig) throw new Error(`${name} has no client config`);
    ({ app, locks } = await createLockApp({
      backend: server.clientConfig,
      keyPrefix: entry.keyPrefix ?? `lab:${name}:`,
    }));
  }, 90_000);

  afterAll(async () => {
    await app?.close();
    await server?.stop();
    expect(stillRunning()).toEqual([]);
  }, 60_000);

  it('moves the leading role with each fault, then grants again with a greater token', async () => {
    const faults = Object.entries(server?.topology ?? {});
    expect(faults.length).toBeGreaterThanOrEqual(2);
    let token = 0;
    const grant = async (): Promise<void> => {
      // Retried inside `wait`: the client may still be finding the new leader.
      const lock = await within(25_000, locks.acquire('k0', { ttl: 2_000, wait: 20_000 }), name);
      expect(lock.fencingToken).toBeGreaterThan(token);
      token = lock.fencingToken;
      await lock.release();
    };
    await grant();
    for (const [fault, run] of faults) {
      const before = await server!.leader!();
      // A fault waits for its role to move and the topology to settle: up to about 2 minutes.
      await within(150_000, run(Math.random), fault);
      const after = await server!.leader!();
      expect({ fault, leader: after }).not.toEqual({ fault, leader: before });
      await grant();
    }
  }, 700_000);
});
