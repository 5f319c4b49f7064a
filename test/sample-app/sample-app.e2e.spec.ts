import { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { AppModule } from '../../sample-app/src/app.module';
import { lockOptionsFromEnv } from '../../sample-app/src/config/lock-options.factory';

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
