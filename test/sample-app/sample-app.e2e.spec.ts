import { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { AppModule } from '../../sample-app/src/app.module';
import { lockOptionsFromEnv } from '../../sample-app/src/config/lock-options.factory';
import { PaymentLedger } from '../../sample-app/src/orders/payment.ledger';
import { LockService } from 'nestjs-distributed-lock';
import { sleep } from '../support/async.helpers';
import { withEnv } from '../support/test-env';
import { uniqueId } from '../support/test-ids';

describe('sample app (memory backend)', () => {
  let app: INestApplication;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
  });

  afterAll(() => app.close());

  it('pays an order exactly once under concurrent requests', async () => {
    const server = app.getHttpServer();
    const responses = await Promise.all(
      Array.from({ length: 5 }, () => request(server).post('/orders/42/pay').send({ amount: 10 })),
    );
    expect(responses.map((r) => r.status).sort()).toEqual([201, 409, 409, 409, 409]);
    const paid = await request(server).get('/orders/42').expect(200);
    expect(paid.body).toMatchObject({ orderId: '42', amount: 10 });
  });

  it('answers 409 to a concurrent report rebuild', async () => {
    const server = app.getHttpServer();
    const statuses = await Promise.all([
      request(server)
        .post('/reports/2025/rebuild')
        .then((r) => r.status),
      request(server)
        .post('/reports/2025/rebuild')
        .then((r) => r.status),
    ]);
    expect(statuses.sort()).toEqual([201, 409]);
  });

  it('moves stock under a two-key lock without losing units', async () => {
    const server = app.getHttpServer();
    await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        request(server)
          .post('/inventory/move')
          .send(
            i % 2
              ? { from: 'apple', to: 'pear', quantity: 1 }
              : { from: 'pear', to: 'apple', quantity: 1 },
          )
          .expect(201),
      ),
    );
    const final = await request(server)
      .post('/inventory/move')
      .send({ from: 'apple', to: 'pear', quantity: 0 });
    expect(final.body.apple + final.body.pear).toBe(20);
  });

  it('serves /health (a real acquire + release on the backend) and /metrics', async () => {
    const server = app.getHttpServer();
    const health = await request(server).get('/health').expect(200);
    expect(health.body).toMatchObject({
      status: 'ok',
      details: { lock: { status: 'up', backend: 'memory' } },
    });
    const metrics = await request(server).get('/metrics').expect(200);
    // The health check's own lock is counted under one name, whatever its random key.
    expect(metrics.text).toContain(
      'distributed_lock_acquired_total{backend="memory",lock="health"}',
    );
  });

  it('reads the backend from the environment and rejects an unknown one', () => {
    expect(lockOptionsFromEnv({}).backend).toEqual({ type: 'memory' });
    expect(lockOptionsFromEnv({ LOCK_BACKEND: 'redis', REDIS_URL: 'redis://h:1' }).backend).toEqual(
      {
        type: 'redis',
        url: 'redis://h:1',
      },
    );
    expect(
      lockOptionsFromEnv({ LOCK_BACKEND: 'etcd', ETCD_HOSTS: 'http://a:1, http://b:2' }).backend,
    ).toEqual({
      type: 'etcd',
      hosts: ['http://a:1', 'http://b:2'],
    });
    expect(() => lockOptionsFromEnv({ LOCK_BACKEND: 'zookeeper' })).toThrow(/LOCK_BACKEND/);
  });
});

describe.each([
  ['redis', { LOCK_BACKEND: 'redis' }],
  ['etcd', { LOCK_BACKEND: 'etcd' }],
])('two sample app instances on %s', (_name, env) => {
  const apps: INestApplication[] = [];

  beforeAll(async () => {
    // The sample app reads REDIS_URL / ETCD_HOSTS, which the test servers set.
    const saved = process.env.LOCK_BACKEND;
    process.env.LOCK_BACKEND = env.LOCK_BACKEND;
    process.env.LOCK_PREFIX = `sample-${Date.now()}:`;
    try {
      for (let i = 0; i < 2; i++) {
        const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
        const app = moduleRef.createNestApplication({ logger: false });
        await app.init();
        apps.push(app);
      }
    } finally {
      process.env.LOCK_BACKEND = saved;
      delete process.env.LOCK_PREFIX;
    }
  });

  afterAll(async () => {
    for (const app of apps) await app.close();
  });

  it('lets only one instance rebuild the same report at a time', async () => {
    const statuses = await Promise.all(
      apps.map((app) =>
        request(app.getHttpServer())
          .post('/reports/1999/rebuild')
          .then((r) => r.status),
      ),
    );
    expect(statuses.sort()).toEqual([201, 409]);
  });
});

describe('fenced writes: two sample app instances sharing Redis', () => {
  const apps: INestApplication[] = [];

  beforeAll(async () => {
    await withEnv(
      { LOCK_BACKEND: 'redis', LOCK_PREFIX: `sample-fenced-${uniqueId()}:` },
      async () => {
        for (let i = 0; i < 2; i++) {
          const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
          const app = moduleRef.createNestApplication({ logger: false });
          await app.init();
          apps.push(app);
        }
      },
    );
  });

  afterAll(async () => {
    for (const app of apps) await app.close();
  });

  it('answers 400 to a payment without a positive amount', async () => {
    await request(apps[0].getHttpServer()).post(`/orders/${uniqueId()}/pay`).send({}).expect(400);
  });

  it('pays an order once across instances, from the shared ledger', async () => {
    const order = uniqueId();
    const responses = await Promise.all(
      [...apps, ...apps].map((app) =>
        request(app.getHttpServer()).post(`/orders/${order}/pay`).send({ amount: 3 }),
      ),
    );
    expect(responses.map((r) => r.status).sort()).toEqual([201, 409, 409, 409]);
    // The other instance reads the same payment.
    const paid = await request(apps[1].getHttpServer()).get(`/orders/${order}`).expect(200);
    expect(paid.body.fencingToken).toBe(responses.find((r) => r.status === 201)?.body.fencingToken);
  });

  it('refuses the write of a holder whose lock expired after another instance took it', async () => {
    const order = uniqueId();
    const key = `order:${order}`;
    // Instance 0 takes the lock, then "pauses" past its ttl (no renewal).
    const stale = await apps[0].get(LockService).acquire(key, { ttl: 300, renew: false });
    await sleep(450);
    const fresh = await apps[1].get(LockService).acquire(key, { wait: 2000 });
    expect(fresh.fencingToken).toBeGreaterThan(stale.fencingToken);
    const payment = (fencingToken: number) => ({
      orderId: order,
      amount: 3,
      fencingToken,
      paidAt: new Date().toISOString(),
    });
    await expect(apps[1].get(PaymentLedger).record(payment(fresh.fencingToken))).resolves.toBe(
      'written',
    );
    // The paused holder wakes up and writes: the store itself refuses it.
    await expect(apps[0].get(PaymentLedger).record(payment(stale.fencingToken))).resolves.toBe(
      'stale',
    );
    await fresh.release();
    const stored = await request(apps[0].getHttpServer()).get(`/orders/${order}`).expect(200);
    expect(stored.body.fencingToken).toBe(fresh.fencingToken);
  });
});
