import { INestApplication, Injectable } from '@nestjs/common';
import {
  DistributedLockModule,
  LockError,
  Locked,
  LockNotAcquiredError,
  LockService,
  RedlockLockBackend,
} from 'nestjs-distributed-lock';
import { Test } from '@nestjs/testing';
import { deferred, within } from '../support/async.helpers';
import { createLockApp } from '../support/test-app';
import { uniqueKey } from '../support/test-ids';
import { startRedisMasters, type RedisMastersTopology } from '../servers/redis-masters.topology';
import { MASTERS } from './redlock-test.helpers';

const RUN = uniqueKey('redlock-run');
/** Far above any wait here: a waiter that only re-checks at the holder's ttl fails its test. */
const LONG_TTL = 20_000;
/** Slack for a loaded 2-core machine; far below LONG_TTL, the cost of a missing wake-up. */
const MARGIN = 3000;

@Injectable()
class ReportService {
  readonly gate = deferred();
  readonly entered = deferred();
  readonly order: string[] = [];
  constructor(readonly locks: LockService) {}

  @Locked(`${RUN}:report:<id>`, { ttl: LONG_TTL, wait: 15_000 })
  async rebuild(id: string, who: string): Promise<string> {
    this.order.push(`${who}:start`);
    if (who === 'first') {
      this.entered.resolve();
      await this.gate.promise;
    }
    this.order.push(`${who}:end`);
    return `${id}:${who}`;
  }
}

describe('RedlockLockBackend through LockService and @Locked, on 5 masters', () => {
  let topology: RedisMastersTopology;
  const apps: INestApplication[] = [];
  const open = async (): Promise<{ locks: LockService; reports: ReportService }> => {
    const { app, locks, get } = await createLockApp(
      { backend: { type: 'redlock', urls: topology.urls }, ttl: LONG_TTL },
      { providers: [ReportService] },
    );
    apps.push(app);
    return { locks, reports: get(ReportService) };
  };

  beforeAll(async () => {
    topology = await startRedisMasters(MASTERS);
  });
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()));
  });
  afterAll(async () => {
    await topology.stop();
  });

  it('acquires, excludes a second instance, extends and releases', async () => {
    const [a, b] = [await open(), await open()];
    const key = `${RUN}:basic`;
    const lock = await a.locks.acquire(key, { ttl: 2000 });
    expect(lock.held).toBe(true);
    await expect(b.locks.acquire(key, { wait: 0 })).rejects.toBeInstanceOf(LockNotAcquiredError);
    const before = lock.expiresAt;
    await lock.extend(LONG_TTL);
    expect(lock.expiresAt).toBeGreaterThan(before + 5000);
    await lock.release();
    expect(lock.held).toBe(false);
    const next = await b.locks.acquire(key, { wait: 0 });
    await next.release();
  });

  it('fencingToken and fencingTokens throw a LockError saying the redlock backend issues none, also on a reentrant handle', async () => {
    const { locks } = await open();
    const key = `${RUN}:fencing`;
    await locks.withLock([key, `${key}:b`], async (lock) => {
      expect(lock.held).toBe(true);
      expect(() => lock.fencingToken).toThrow(LockError);
      expect(() => lock.fencingToken).toThrow(/redlock backend issues no fencing tokens/);
      expect(() => lock.fencingTokens).toThrow(/redlock backend issues no fencing tokens/);
      // Re-entering the keys it holds makes a handle without reading any token.
      const inner = await locks.acquire(key);
      expect(inner.held).toBe(true);
      expect(() => inner.fencingToken).toThrow(/redlock backend issues no fencing tokens/);
      await inner.release();
    });
  });

  it('@Locked: a second instance waits and is woken by the release, long before the holder ttl', async () => {
    const [a, b] = [await open(), await open()];
    const first = a.reports.rebuild('r1', 'first');
    await within(MARGIN, a.reports.entered.promise, 'first call inside');
    const second = b.reports.rebuild('r1', 'second');
    // The second is parked (busy on every master) while the first runs.
    await new Promise((r) => setTimeout(r, 300));
    expect(b.reports.order).toEqual([]);
    const releasedAt = Date.now();
    a.reports.gate.resolve();
    expect(await first).toBe('r1:first');
    expect(await within(MARGIN, second, 'second call after the release')).toBe('r1:second');
    // Without the wake-up it would come back at retryAfter, the holder's remaining 20 s.
    expect(Date.now() - releasedAt).toBeLessThan(MARGIN);
    expect(b.reports.order).toEqual(['second:start', 'second:end']);
  });

  it('waiters of four instances racing for one key all get it in turn, one at a time (split votes retried, not stuck)', async () => {
    const instances = await Promise.all([open(), open(), open(), open()]);
    const key = `${RUN}:race`;
    let inside = 0;
    let maxInside = 0;
    let done = 0;
    const work = async (): Promise<void> => {
      inside++;
      maxInside = Math.max(maxInside, inside);
      await new Promise((r) => setTimeout(r, 5));
      inside--;
      done++;
    };
    const calls = instances.flatMap(({ locks }) =>
      [0, 1, 2].map(() => locks.withLock(key, work, { wait: 15_000 })),
    );
    // Every release wakes the rest; without wake-ups each would wait out the 20 s ttl.
    await within(15_000, Promise.all(calls), 'twelve racing calls');
    expect(done).toBe(12);
    expect(maxInside).toBe(1);
  });

  it('is configured as { type: "redlock", urls }, and an even number of masters stops the start with a TypeError', async () => {
    const { locks } = await open();
    expect(locks.lockRuntime.backend).toBeInstanceOf(RedlockLockBackend);
    const build = Test.createTestingModule({
      imports: [
        DistributedLockModule.forRoot({
          backend: { type: 'redlock', urls: topology.urls.slice(0, 4) },
        }),
      ],
    }).compile();
    await expect(build).rejects.toThrow(/odd number of masters, 3 or more \(got 4\)/);
  });
});
