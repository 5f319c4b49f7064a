import { randomUUID } from 'node:crypto';
import { Etcd3 } from 'etcd3';
import type { EtcdLockBackend } from '../../lib/backends/etcd';
import { EtcdMember, planEtcdCluster, startEtcdMember } from '../servers/etcd.server';
import { ServerProcess, removeDir } from '../servers/server.process';
import { eventually, sleep } from '../support/async.helpers';
import { createLockApp } from '../support/test-app';
import { newToken, uniqueKey } from '../support/test-ids';
import { Resources, members, waitForLock } from './etcd-test.helpers';

interface RunningMember {
  readonly member: EtcdMember;
  readonly process: ServerProcess;
  readonly url: string;
  alive: boolean;
}

/** The member every reachable member names as leader (bounded wait). */
async function findLeader(
  running: readonly RunningMember[],
  timeoutMs: number,
): Promise<RunningMember> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; attempt < 500 && Date.now() < deadline; attempt++) {
    for (const candidate of running.filter((m) => m.alive)) {
      const client = new Etcd3({ hosts: [candidate.url] });
      try {
        const status = await client.maintenance.status({ deadline: Date.now() + 1_000 });
        if (status.leader !== '0' && status.leader === status.header.member_id) return candidate;
      } catch {
        // Not ready, or no leader yet.
      } finally {
        client.close();
      }
    }
    await sleep(100);
  }
  throw new Error(`no leader within ${timeoutMs} ms`);
}

/** Retries `action` on errors (an election in progress) a bounded number of times. */
async function retrying<T>(action: () => Promise<T>, attempts = 100): Promise<T> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await action();
    } catch (err) {
      last = err;
      await sleep(100);
    }
  }
  throw last;
}

describe('EtcdLockBackend on a 3-member etcd cluster (real etcd)', () => {
  const resources = new Resources();
  let running: RunningMember[] = [];

  beforeAll(async () => {
    const cluster = await planEtcdCluster(3);
    // One explicit cluster token: startEtcdMember's default includes Date.now(), which differs
    // between members started a few ms apart and makes them reject each other.
    const token = `ndl-cluster-${process.pid}-${randomUUID()}`;
    // Members only serve once a quorum formed: start them together.
    const processes = await Promise.all(
      cluster.map((member) => startEtcdMember(member, cluster, { token })),
    );
    running = cluster.map((member, i) => ({
      member,
      process: processes[i],
      url: `http://127.0.0.1:${member.clientPort}`,
      alive: true,
    }));
  }, 90_000);

  afterAll(async () => {
    await resources.closeAll();
    for (const member of running) {
      await member.process.stop('SIGKILL');
      removeDir(member.process.dir);
    }
  }, 60_000);

  it('keeps one holder at a time and increasing fencing tokens while the leader is killed', async () => {
    const hosts = running.map((m) => m.url);
    const backends: EtcdLockBackend[] = [0, 1, 2].map(() =>
      resources.backend({ hosts, commandTimeout: 3_000 }),
    );
    const keys = [uniqueKey('cluster-a'), uniqueKey('cluster-b')];
    const holders = new Map<string, string>();
    const lastFencing = new Map<string, number>();
    const violations: string[] = [];
    const grants: { key: string; at: number; fencing: number }[] = [];
    let lostWhileHolding = 0;
    for (const backend of backends) {
      backend.onLost((event) => {
        for (const lock of event.locks) {
          if (holders.get(lock.keys[0]) === lock.token) {
            holders.delete(lock.keys[0]);
            lostWhileHolding += 1;
          }
        }
      });
    }

    const workers = 6;
    const rounds = 5;
    let killedAt = 0;
    const work = Array.from({ length: workers }, async (_, w) => {
      const backend = backends[w % backends.length];
      const key = keys[w % keys.length];
      for (let round = 0; round < rounds; round++) {
        const got = await waitForLock(backend, [key], {
          ttl: 60_000,
          wait: 60_000,
          retryErrors: true,
        });
        if (holders.has(key))
          violations.push(`${key}: ${got.token} granted while ${holders.get(key)} holds it`);
        holders.set(key, got.token);
        const fencing = got.fencingTokens[0];
        if (fencing <= (lastFencing.get(key) ?? 0))
          violations.push(`${key}: fencing ${fencing} not increasing`);
        lastFencing.set(key, fencing);
        grants.push({ key, at: Date.now(), fencing });
        await sleep(killedAt === 0 ? 150 : 30);
        // The critical section ends before the release is sent.
        if (holders.get(key) === got.token) holders.delete(key);
        await retrying(() => backend.release({ keys: [key], token: got.token }));
      }
    });

    // Kill the leader while locks are held and waiters wait.
    const raw = resources.client(hosts);
    const queued = async (): Promise<boolean> => {
      const counts = await Promise.all(
        keys.map((key) => members(raw, key).then((list) => list.length)),
      );
      return counts.some((count) => count >= 2);
    };
    await eventually(
      async () => grants.length >= 2 && holders.size > 0 && (await queued()),
      30_000,
      'held and queued',
    );
    const leader = await findLeader(running, 10_000);
    leader.alive = false;
    killedAt = Date.now();
    await leader.process.stop('SIGKILL');

    await Promise.all(work);
    const newLeader = await findLeader(running, 20_000);
    expect(newLeader).not.toBe(leader);
    expect(violations).toEqual([]);
    expect(grants).toHaveLength(workers * rounds);
    expect(grants.filter((grant) => grant.at > killedAt).length).toBeGreaterThan(0);
    expect(lostWhileHolding).toBe(0);

    // Still usable afterwards, through the surviving members.
    const token = newToken();
    const after = await retrying(() =>
      backends[0].acquire({ keys: [uniqueKey('cluster-after')], token, ttl: 5_000 }),
    );
    expect(after.acquired).toBe(true);
  }, 120_000);

  it('keeps serving LockService through the module when a member it was given is dead', async () => {
    // Runs after the leader was killed above: the dead member comes first in the host list.
    const dead = running.filter((m) => !m.alive);
    expect(dead).toHaveLength(1);
    const hosts = [...dead, ...running.filter((m) => m.alive)].map((m) => m.url);
    const { app, locks } = await createLockApp({
      backend: { type: 'etcd', hosts, commandTimeout: 3_000 },
    });
    try {
      const key = uniqueKey('cluster-module');
      const tokens: number[] = [];
      for (let i = 0; i < 20; i++) {
        tokens.push(await locks.withLock(key, (lock) => lock.fencingToken, { wait: 5_000 }));
      }
      expect(tokens).toHaveLength(20);
      for (let i = 1; i < tokens.length; i++) expect(tokens[i]).toBeGreaterThan(tokens[i - 1]);
    } finally {
      await app.close();
    }
  }, 60_000);
});
