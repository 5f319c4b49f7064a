import { INestApplication, Injectable } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Locked } from 'nestjs-distributed-lock';
import { registerLockMetrics } from 'nestjs-distributed-lock/prometheus';
import { Counter, Registry } from 'prom-client';
import request from 'supertest';
import { AppModule } from '../../sample-app/src/app.module';
import { createLockApp } from '../support/test-app';
import { redisUrl, withEnv } from '../support/test-env';
import { uniqueId } from '../support/test-ids';

/** The value of one series of the exposition text, or undefined when it is absent. */
function sample(text: string, metric: string, labels: Record<string, string>): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`)) continue;
    const inside = line.slice(metric.length + 1, line.indexOf('}'));
    if (wanted.every((pair) => inside.split(',').includes(pair))) {
      return Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return undefined;
}

/** Distinct values of the label `label` across every series of the registry's lock metrics. */
async function labelValues(registry: Registry, label: string): Promise<Set<string>> {
  const values = new Set<string>();
  for (const metric of await registry.getMetricsAsJSON()) {
    for (const value of metric.values) {
      const v = (value.labels as Record<string, string | number | undefined>)[label];
      if (v !== undefined) values.add(String(v));
    }
  }
  return values;
}

describe('lock metrics (Prometheus)', () => {
  describe('scraped from the sample app over HTTP, on Redis', () => {
    let app: INestApplication;

    beforeAll(async () => {
      const env = {
        LOCK_BACKEND: 'redis',
        REDIS_URL: redisUrl(),
        LOCK_PREFIX: `ndl-test:metrics:${uniqueId()}:`,
      };
      await withEnv(env, async () => {
        const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
        app = moduleRef.createNestApplication({ logger: false });
        await app.init();
      });
    });

    afterAll(() => app?.close());

    it('counts grants, busy refusals, hold times and held locks by backend and key template', async () => {
      const server = app.getHttpServer();
      const order = uniqueId();
      const paid = await Promise.all(
        Array.from({ length: 3 }, () =>
          request(server).post(`/orders/${order}/pay`).send({ amount: 5 }),
        ),
      );
      // One pays; the others wait for the lock, then find the order paid.
      expect(paid.map((r) => r.status).sort()).toEqual([201, 409, 409]);
      const rebuilds = await Promise.all([
        request(server).post('/reports/2031/rebuild'),
        request(server).post('/reports/2031/rebuild'),
      ]);
      expect(rebuilds.map((r) => r.status).sort()).toEqual([201, 409]);

      const scraped = await request(server).get('/metrics').expect(200);
      expect(scraped.headers['content-type']).toContain('text/plain');
      const text = scraped.text;
      const order$ = { backend: 'redis', lock: 'order:<orderId>' };
      const report$ = { backend: 'redis', lock: 'report:<year>' };
      expect(sample(text, 'distributed_lock_acquired_total', order$)).toBe(3);
      expect(sample(text, 'distributed_lock_acquired_total', report$)).toBe(1);
      expect(sample(text, 'distributed_lock_busy_total', report$)).toBe(1);
      expect(
        sample(text, 'distributed_lock_hold_seconds_count', { ...order$, outcome: 'released' }),
      ).toBe(3);
      expect(
        sample(text, 'distributed_lock_wait_seconds_count', { ...report$, outcome: 'busy' }),
      ).toBe(1);
      // The first payment held the lock for its 50 ms gateway call; waits of the others were at least that.
      expect(
        sample(text, 'distributed_lock_hold_seconds_sum', { ...order$, outcome: 'released' }),
      ).toBeGreaterThanOrEqual(0.05);
      expect(sample(text, 'distributed_lock_held', order$)).toBe(0);
      // Never a raw key: the order id appears nowhere in the exposition.
      expect(text).not.toContain(order);
    });
  });

  describe('cardinality', () => {
    @Injectable()
    class Items {
      @Locked('item:<id>', { wait: 0 })
      async touch(id: string): Promise<string> {
        return id;
      }
    }

    let app: Awaited<ReturnType<typeof createLockApp>>;
    const registry = new Registry();
    let stop: () => void;

    beforeAll(async () => {
      app = await createLockApp(
        {
          backend: { type: 'redis', url: redisUrl() },
          keyPrefix: `ndl-test:cardinality:${uniqueId()}:`,
        },
        { providers: [Items] },
      );
      stop = registerLockMetrics(app.locks, { registry, maxNames: 50 });
    });

    afterAll(async () => {
      stop?.();
      await app?.app.close();
    });

    /** Runs `fn(i)` for i in [0, count), `width` at a time. */
    async function each(count: number, width: number, fn: (i: number) => Promise<unknown>) {
      for (let start = 0; start < count; start += width) {
        await Promise.all(
          Array.from({ length: Math.min(width, count - start) }, (_, j) => fn(start + j)),
        );
      }
    }

    it('keeps the lock label bounded over 10,000 distinct keys, whatever names they get', async () => {
      const items = app.get(Items);
      const run = uniqueId();
      // Through @Locked: one series per template, whatever the ids.
      await each(10_000, 100, (i) => items.touch(`${run}-${i}`));
      // Through LockService without a name: one 'unnamed' series.
      await each(2_000, 100, (i) => app.locks.withLock(`raw:${run}:${i}`, () => undefined));
      // The worst case, a name built from the raw key: capped at maxNames, the rest is 'other'.
      await each(2_000, 100, (i) =>
        app.locks.withLock(`named:${run}:${i}`, () => undefined, { name: `named:${run}:${i}` }),
      );
      const locks = await labelValues(registry, 'lock');
      expect(locks.has('item:<id>')).toBe(true);
      expect(locks.has('unnamed')).toBe(true);
      expect(locks.has('other')).toBe(true);
      expect(locks.size).toBeLessThanOrEqual(50 + 1);
      const text = await registry.metrics();
      expect(text).not.toContain(`${run}-`);
      expect(
        sample(text, 'distributed_lock_acquired_total', { backend: 'redis', lock: 'item:<id>' }),
      ).toBe(10_000);
      expect(
        sample(text, 'distributed_lock_acquired_total', { backend: 'redis', lock: 'unnamed' }),
      ).toBe(2_000);
      expect(sample(text, 'distributed_lock_held', { backend: 'redis', lock: 'item:<id>' })).toBe(
        0,
      );
    }, 120_000);

    it('refuses a metric name already taken by a metric it did not make, and bad options', () => {
      const taken = new Registry();
      new Counter({ name: 'distributed_lock_held', help: 'not ours', registers: [taken] });
      expect(() => registerLockMetrics(app.locks, { registry: taken })).toThrow(
        'already registered by someone else',
      );
      expect(() => registerLockMetrics(app.locks, { prefix: 'bad-prefix' })).toThrow(TypeError);
      expect(() => registerLockMetrics(app.locks, { buckets: [] })).toThrow(TypeError);
      expect(() => registerLockMetrics(app.locks, { maxNames: 0 })).toThrow(TypeError);
    });

    it('stops updating once unregistered, and shares metrics with a second registration', async () => {
      const shared = new Registry();
      const first = registerLockMetrics(app.locks, { registry: shared });
      const second = registerLockMetrics(app.locks, { registry: shared });
      const twice = { backend: 'redis', lock: 'twice' };
      await app.locks.withLock(`twice:${uniqueId()}`, () => undefined, { name: 'twice' });
      // Two registrations on one registry share the series, and both count.
      expect(sample(await shared.metrics(), 'distributed_lock_acquired_total', twice)).toBe(2);
      first();
      second();
      await app.locks.withLock(`twice:${uniqueId()}`, () => undefined, { name: 'twice' });
      expect(sample(await shared.metrics(), 'distributed_lock_acquired_total', twice)).toBe(2);
    });
  });
});
