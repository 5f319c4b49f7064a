import { Inject, Injectable } from '@nestjs/common';
import { Cron, CronExpression, ScheduleModule } from '@nestjs/schedule';
import { DistributedLockModuleOptions, Locked, LockService } from 'nestjs-distributed-lock';
import { sleep } from '../support/async.helpers';
import { createLockApp } from '../support/test-app';
import { etcdHosts, redisUrl } from '../support/test-env';
import { uniqueId } from '../support/test-ids';

/** One run of the job: which instance ran it, for which scheduled second. */
interface Run {
  instance: string;
  second: number;
}

const INSTANCE = Symbol('instance');
const RUNS = Symbol('runs');

interface InstanceConfig {
  name: string;
  /** How late this instance's scheduler fires each tick, in ms. */
  lateness: number;
}

/**
 * Two replicas of one app: the same @Cron job every second, run once across replicas through a
 * skip-if-busy lock. The replica named "late" fires each tick `lateness` ms after the other.
 */
function jobsWith(holdAtLeast: number) {
  @Injectable()
  class ReportJob {
    constructor(
      @Inject(INSTANCE) private readonly instance: InstanceConfig,
      @Inject(RUNS) private readonly runs: Run[],
    ) {}

    @Cron(CronExpression.EVERY_SECOND)
    async onTick(): Promise<void> {
      const firedAt = Date.now();
      if (this.instance.lateness > 0) await sleep(this.instance.lateness);
      await this.run(Math.floor(firedAt / 1000));
    }

    @Locked('job:report', { wait: 0, onBusy: 'skip', holdAtLeast })
    async run(second: number): Promise<void> {
      this.runs.push({ instance: this.instance.name, second });
      await sleep(20); // a short job: far shorter than the replicas' skew
    }
  }
  return ReportJob;
}

async function replicas(
  backend: DistributedLockModuleOptions['backend'],
  holdAtLeast: number,
  lateness: number,
) {
  const runs: Run[] = [];
  const keyPrefix = `ndl-test:cron:${uniqueId()}:`;
  const Job = jobsWith(holdAtLeast);
  const start = (instance: InstanceConfig) =>
    createLockApp(
      { backend, keyPrefix },
      {
        imports: [ScheduleModule.forRoot()],
        providers: [
          Job,
          { provide: INSTANCE, useValue: instance },
          { provide: RUNS, useValue: runs },
        ],
      },
    );
  const apps = await Promise.all([
    start({ name: 'prompt', lateness: 0 }),
    start({ name: 'late', lateness }),
  ]);
  return {
    runs,
    locks: apps[0].locks,
    close: () => Promise.all(apps.map((app) => app.app.close())),
  };
}

/** Runs per scheduled second, over the whole seconds strictly inside the observed window. */
function runsPerSecond(runs: readonly Run[]): Map<number, Run[]> {
  const bySecond = new Map<number, Run[]>();
  for (const run of runs) bySecond.set(run.second, [...(bySecond.get(run.second) ?? []), run]);
  return bySecond;
}

const TICKS = 4;

describe.each([
  ['redis', () => ({ type: 'redis' as const, url: redisUrl() })],
  ['etcd', () => ({ type: 'etcd' as const, hosts: etcdHosts() })],
])('run-once cron across two replicas on %s', (_name, backend) => {
  it('runs each tick on exactly one replica when one fires 300 ms late (holdAtLeast 800 ms)', async () => {
    const { runs, close } = await replicas(backend(), 800, 300);
    try {
      await sleep(TICKS * 1000 + 500);
    } finally {
      await close();
    }
    const bySecond = runsPerSecond(runs);
    const seconds = [...bySecond.keys()].sort((a, b) => a - b);
    // Every tick ran (the first and last may fall outside the window), and none ran twice.
    expect(seconds.length).toBeGreaterThanOrEqual(TICKS - 1);
    for (const second of seconds) expect(bySecond.get(second)).toHaveLength(1);
  }, 30_000);

  it('without holdAtLeast, the late replica runs the same tick again (the control)', async () => {
    const { runs, close } = await replicas(backend(), 0, 300);
    try {
      await sleep(2600);
    } finally {
      await close();
    }
    const doubled = [...runsPerSecond(runs).values()].filter((list) => list.length > 1);
    // A 20 ms job releases long before the late tick: both replicas run it.
    expect(doubled.length).toBeGreaterThanOrEqual(1);
  }, 30_000);
});

describe('maxHold ends a stuck job', () => {
  @Injectable()
  class StuckJob {
    aborted = 0;

    constructor(readonly locks: LockService) {}

    @Locked('job:stuck', { wait: 0, maxHold: 500, ttl: 5000 })
    async run(): Promise<void> {
      const signal = this.locks.current()?.signal;
      // Stuck until told: a job that ignored the signal would hold the lock only until maxHold too.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 10_000);
        signal?.addEventListener('abort', () => {
          this.aborted++;
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  it('aborts its signal and frees the lock for the other replica after maxHold', async () => {
    const keyPrefix = `ndl-test:stuck:${uniqueId()}:`;
    const apps = await Promise.all(
      [0, 1].map(() =>
        createLockApp(
          { backend: { type: 'redis', url: redisUrl() }, keyPrefix },
          { providers: [StuckJob] },
        ),
      ),
    );
    try {
      const first = apps[0].get(StuckJob);
      const started = Date.now();
      const stuck = first.run().then(
        () => 'resolved',
        (err: Error) => err.name,
      );
      await sleep(100);
      expect(await apps[1].locks.isLocked('job:stuck')).toBe(true);
      // Ends well before the job's own 10 s: the lock was given up at maxHold.
      expect(await stuck).toBe('LockLostError');
      expect(Date.now() - started).toBeLessThan(5000);
      expect(first.aborted).toBe(1);
      expect(await apps[1].locks.isLocked('job:stuck')).toBe(false);
      const other = await apps[1].locks.tryAcquire('job:stuck');
      expect(other).not.toBeNull();
      await other?.release();
    } finally {
      await Promise.all(apps.map((app) => app.app.close()));
    }
  });
});
