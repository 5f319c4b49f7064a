import { Controller, Get, INestApplication } from '@nestjs/common';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { Etcd3, Watcher } from 'etcd3';
import { Redis } from 'ioredis';
import request from 'supertest';
import { LockService, MemoryLockBackend } from 'nestjs-distributed-lock';
import type { DistributedLockModuleOptions } from 'nestjs-distributed-lock';
import { LockHealthIndicator } from 'nestjs-distributed-lock/terminus';
import type { LockHealthCheckOptions } from 'nestjs-distributed-lock/terminus';
import { startEtcd } from '../servers/etcd.server';
import { startRedis } from '../servers/redis.server';
import { removeDir, ServerProcess } from '../servers/server.process';
import { eventually, sleep } from '../support/async.helpers';
import { createLockApp } from '../support/test-app';
import { uniqueKey } from '../support/test-ids';

/** The indicator's timeout in these tests, ms. */
const TIMEOUT = 1000;
/**
 * Slack over the timeout for the 503 of a frozen backend (HTTP, Nest, a loaded machine). The
 * backends' own command timeout is 10 s, so a check that waited for the backend would take
 * that long and fail the bound.
 */
const MARGIN = 3000;
const COMMAND_TIMEOUT = 10_000;
/** The reserved part of every health-check key (after the module's keyPrefix). */
const HEALTH_KEY = 'nestjs-distributed-lock:health:';

@Controller('health')
class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly lockHealth: LockHealthIndicator,
  ) {}

  @Get()
  @HealthCheck()
  check() {
    return this.health.check([() => this.lockHealth.isHealthy('lock', { timeout: TIMEOUT })]);
  }
}

/** A Nest HTTP app serving GET /health with Terminus and the lock indicator. */
async function healthApp(options: DistributedLockModuleOptions): Promise<INestApplication> {
  const { app } = await createLockApp(options, {
    imports: [TerminusModule.forRoot({ logger: false })],
    controllers: [HealthController],
    providers: [LockHealthIndicator],
  });
  return app;
}

interface HealthAnswer {
  readonly status: number;
  readonly ms: number;
  /** The indicator's entry: under `info` when up, under `error` when down. */
  readonly lock: Record<string, unknown> | undefined;
  readonly overall: unknown;
}

async function getHealth(app: INestApplication): Promise<HealthAnswer> {
  const started = Date.now();
  const res = await request(app.getHttpServer()).get('/health');
  const ms = Date.now() - started;
  const body = res.body as {
    status?: unknown;
    info?: { lock?: Record<string, unknown> };
    error?: { lock?: Record<string, unknown> };
  };
  const lock = res.status === 200 ? body.info?.lock : body.error?.lock;
  return { status: res.status, ms, lock, overall: body.status };
}

/**
 * GET /health while the server `pid` (started by this test) is frozen with SIGSTOP, kept frozen
 * 300 ms past the answer so the check's own acquire is answered only after it, then thawed.
 */
async function healthWhileFrozen(app: INestApplication, pid: number): Promise<HealthAnswer> {
  process.kill(pid, 'SIGSTOP');
  try {
    const answer = await getHealth(app);
    await sleep(300);
    return answer;
  } finally {
    process.kill(pid, 'SIGCONT');
  }
}

/** Asks until the backend is healthy again after a fault; bounded in count and time. */
async function eventuallyUp(app: INestApplication, ms: number): Promise<HealthAnswer> {
  let last: HealthAnswer | undefined;
  await eventually(
    async () => {
      last = await getHealth(app);
      return last.status === 200;
    },
    ms,
    'health back up',
  );
  expect(last?.status).toBe(200);
  return last as HealthAnswer;
}

describe('LockHealthIndicator over HTTP (Terminus)', () => {
  describe('memory backend', () => {
    it('answers 200 with the backend, its endpoint and the latency', async () => {
      const app = await healthApp({});
      try {
        const answer = await getHealth(app);
        expect(answer.status).toBe(200);
        expect(answer.overall).toBe('ok');
        expect(answer.lock).toEqual({
          status: 'up',
          backend: 'memory',
          endpoint: 'in-process',
          latencyMs: expect.any(Number),
        });
        expect(answer.lock?.latencyMs).toBeGreaterThanOrEqual(0);
      } finally {
        await app.close();
      }
    });

    it('answers 503 with the cause when the backend fails, without hanging', async () => {
      const backend = new MemoryLockBackend();
      const app = await healthApp({ backend });
      try {
        await backend.close();
        const answer = await getHealth(app);
        expect(answer.status).toBe(503);
        expect(answer.lock).toMatchObject({
          status: 'down',
          backend: 'memory',
          latencyMs: expect.any(Number),
          message: expect.stringMatching(/^memory backend at in-process failed to .*closed/),
        });
      } finally {
        await app.close();
      }
    });

    it('never shows credentials, also when a custom backend puts them in its endpoint', async () => {
      const backend = new MemoryLockBackend();
      // A custom backend that names its endpoint with the credentials in it.
      Object.defineProperty(backend, 'endpoint', { value: 'redis://admin:p@ss/w0rd@db:6379' });
      const app = await healthApp({ backend });
      try {
        await backend.close();
        const answer = await getHealth(app);
        expect(answer.status).toBe(503);
        expect(answer.lock).toMatchObject({ status: 'down', endpoint: 'redis://db:6379' });
        expect(answer.lock?.message).toContain('redis://db:6379');
        expect(JSON.stringify(answer)).not.toMatch(/admin|p@ss|w0rd/);
      } finally {
        await app.close();
      }
    });

    it('reports down during the shutdown grace, when new locks are refused', async () => {
      const app = await healthApp({ shutdownGrace: 5000 });
      const locks = app.get(LockService);
      const held = await locks.acquire(uniqueKey('grace'));
      const closing = app.close();
      try {
        const indicator = app.get(LockHealthIndicator);
        let message = '';
        // app.close() reaches the lock module's shutdown after the destroy hooks: poll until then.
        await eventually(
          async () => {
            const answer = await indicator.isHealthy('lock');
            message = String(answer.lock.message ?? '');
            return answer.lock.status === 'down';
          },
          3000,
          'health down during the shutdown grace',
        );
        expect(message).toContain('shutting down');
      } finally {
        await held.release();
        await closing;
      }
    });

    it('rejects bad options with a TypeError before checking anything', async () => {
      const app = await healthApp({});
      try {
        const indicator = app.get(LockHealthIndicator);
        await expect(indicator.isHealthy('lock', { timeout: 0 })).rejects.toThrow(TypeError);
        const typo = { tiemout: 500 } as LockHealthCheckOptions;
        await expect(indicator.isHealthy('lock', typo)).rejects.toThrow(/did you mean "timeout"/);
      } finally {
        await app.close();
      }
    });
  });

  describe('Redis (a server of its own, frozen with SIGSTOP)', () => {
    let server: ServerProcess;
    let raw: Redis;
    let app: INestApplication;
    const keyPrefix = `${uniqueKey('health')}:`;
    /** Keyspace events on health-check keys, in order: `hset`, `del`, `expired`, ... */
    const events: string[] = [];
    let subscriber: Redis;

    beforeAll(async () => {
      server = await startRedis({ extraArgs: ['--notify-keyspace-events', 'Kgh$x'] });
      const url = `redis://127.0.0.1:${server.port}`;
      raw = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await raw.connect();
      subscriber = new Redis(url, { lazyConnect: true });
      await subscriber.connect();
      subscriber.on('pmessage', (_pattern: string, _channel: string, event: string) =>
        events.push(event),
      );
      await subscriber.psubscribe(`__keyspace@0__:*${keyPrefix}${HEALTH_KEY}*`);
      app = await healthApp({
        backend: { type: 'redis', url, commandTimeout: COMMAND_TIMEOUT },
        keyPrefix,
      });
    });

    afterAll(async () => {
      await app?.close();
      subscriber?.disconnect();
      raw?.disconnect();
      await server?.stop();
      if (server) removeDir(server.dir);
    });

    /** Every Redis key a health check left under this suite's prefix. */
    async function leftKeys(): Promise<string[]> {
      return raw.keys(`*${keyPrefix}*`);
    }

    it('answers 200 with the backend, its endpoint and the latency, and leaves no key', async () => {
      const answer = await getHealth(app);
      expect(answer.status).toBe(200);
      expect(answer.lock).toEqual({
        status: 'up',
        backend: 'redis',
        endpoint: `127.0.0.1:${server.port}`,
        latencyMs: expect.any(Number),
      });
      // Released, not left to its ttl (10 s): nothing remains right after the answer.
      expect(await leftKeys()).toEqual([]);
      // The check really took a lock on the server (and released it).
      await eventually(() => events.includes('del'), 5000, 'keyspace events of the check');
      expect(events[0]).toBe('hset');
    });

    it('answers 503 within its timeout when Redis is frozen, and releases the late grant', async () => {
      events.length = 0;
      const answer = await healthWhileFrozen(app, server.pid);
      expect(answer.status).toBe(503);
      expect(answer.ms).toBeLessThan(TIMEOUT + MARGIN);
      expect(answer.overall).toBe('error');
      expect(answer.lock).toMatchObject({
        status: 'down',
        backend: 'redis',
        endpoint: `127.0.0.1:${server.port}`,
        latencyMs: expect.any(Number),
        message: `redis backend at 127.0.0.1:${server.port} did not answer the health check within ${TIMEOUT} ms (ping, acquire pending)`,
      });
      // Node's timers may fire a fraction of a ms before performance.now() says they are due.
      expect(answer.lock?.latencyMs).toBeGreaterThanOrEqual(TIMEOUT - 2);

      // Running again, Redis executes the acquire it received while frozen: the grant is
      // written, then deleted by the check's clean-up, not left to expire with its ttl.
      // A grant nobody released would end only with its ttl, 10 s after the freeze.
      await eventually(() => events.includes('del'), 3000, 'the late grant released');
      expect(events[0]).toBe('hset');
      expect(events).not.toContain('expired');
      expect(await leftKeys()).toEqual([]);

      await eventuallyUp(app, 10_000);
    });
  });

  describe('etcd (a server of its own, frozen with SIGSTOP)', () => {
    let server: ServerProcess;
    let raw: Etcd3;
    let watcher: Watcher;
    let app: INestApplication;
    const keyPrefix = `${uniqueKey('health')}:`;
    /** Watch events on health-check keys, in order. */
    const events: ('put' | 'delete')[] = [];

    beforeAll(async () => {
      server = await startEtcd();
      const hosts = `http://127.0.0.1:${server.port}`;
      raw = new Etcd3({ hosts });
      watcher = await raw.watch().prefix(`${keyPrefix}${HEALTH_KEY}`).create();
      watcher.on('put', () => events.push('put'));
      watcher.on('delete', () => events.push('delete'));
      app = await healthApp({
        backend: { type: 'etcd', hosts, commandTimeout: COMMAND_TIMEOUT },
        keyPrefix,
      });
    });

    afterAll(async () => {
      await app?.close();
      await watcher?.cancel();
      raw?.close();
      await server?.stop();
      if (server) removeDir(server.dir);
      // etcd3 and grpc-js keep reconnect timers for a moment after close (see etcd-test.helpers).
      await sleep(1500);
    });

    /** Every etcd key a health check left under this suite's prefix. */
    async function leftKeys(): Promise<string[]> {
      return raw.getAll().prefix(keyPrefix).keys();
    }

    it('answers 200 with the backend, its endpoint and the latency, and leaves no key', async () => {
      const answer = await getHealth(app);
      expect(answer.status).toBe(200);
      expect(answer.lock).toEqual({
        status: 'up',
        backend: 'etcd',
        endpoint: `http://127.0.0.1:${server.port}`,
        latencyMs: expect.any(Number),
      });
      expect(await leftKeys()).toEqual([]);
      await eventually(() => events.includes('delete'), 5000, 'watch events of the check');
      expect(events[0]).toBe('put');
    });

    it('answers 503 within its timeout when etcd is frozen, and leaves no key behind', async () => {
      events.length = 0;
      const answer = await healthWhileFrozen(app, server.pid);
      expect(answer.status).toBe(503);
      expect(answer.ms).toBeLessThan(TIMEOUT + MARGIN);
      expect(answer.lock).toMatchObject({
        status: 'down',
        backend: 'etcd',
        endpoint: `http://127.0.0.1:${server.port}`,
        message: expect.stringContaining(`did not answer the health check within ${TIMEOUT} ms`),
      });
      // Node's timers may fire a fraction of a ms before performance.now() says they are due.
      expect(answer.lock?.latencyMs).toBeGreaterThanOrEqual(TIMEOUT - 2);

      // Running again, etcd applies the acquire it received while frozen (the put), and the
      // check's clean-up deletes it. The session lease lives on (etcd answered again well within
      // it): a grant nobody released would be deleted only when its ttl ends, 10 s after the
      // freeze.
      await eventually(() => events.includes('delete'), 3000, 'the late grant released');
      expect(events).toEqual(['put', 'delete']);
      expect(await leftKeys()).toEqual([]);

      await eventuallyUp(app, 10_000);
    });
  });
});
