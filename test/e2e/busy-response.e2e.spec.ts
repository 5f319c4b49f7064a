import {
  ConflictException,
  Controller,
  Get,
  INestApplication,
  Injectable,
  Param,
} from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { Locked, LockInterceptor, LockService } from 'nestjs-distributed-lock';
import { DistributedLockTestingModule, LockTesting } from 'nestjs-distributed-lock/testing';
import type { DistributedLockTestingOptions } from 'nestjs-distributed-lock/testing';

@Injectable()
class ReportService {
  @Locked('report:<year>', { wait: 0, busyMessage: 'This report is being rebuilt.' })
  async rebuild(year: string): Promise<string> {
    return `rebuilt ${year}`;
  }
}

@Controller()
class ReportsController {
  constructor(private readonly reports: ReportService) {}

  @Get('plain/:id')
  @Locked('plain:<id>', { wait: 0 })
  async plain(@Param('id') id: string): Promise<string> {
    return id;
  }

  @Get('custom/:id')
  @Locked('custom:<id>', { wait: 0, busyRetryAfter: 4_500, busyMessage: 'Exporting; come back.' })
  async custom(@Param('id') id: string): Promise<string> {
    return id;
  }

  @Get('paid/:id')
  @Locked('paid:<id>', { wait: 0 })
  async paid(@Param('id') id: string): Promise<never> {
    throw new ConflictException(`order ${id} is already paid`);
  }

  // Not locked here: the lock is the service's, mapped by the global interceptor.
  @Get('reports/:year')
  rebuild(@Param('year') year: string): Promise<string> {
    return this.reports.rebuild(year);
  }
}

async function start(
  options: DistributedLockTestingOptions = {},
): Promise<{ app: INestApplication; testing: LockTesting }> {
  const moduleRef = await Test.createTestingModule({
    imports: [DistributedLockTestingModule.forRoot(options)],
    controllers: [ReportsController],
    providers: [ReportService, { provide: APP_INTERCEPTOR, useClass: LockInterceptor }],
  }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  return { app, testing: app.get(LockTesting) };
}

describe('the answer to a busy lock over HTTP', () => {
  let app: INestApplication;
  let testing: LockTesting;

  afterEach(async () => {
    await app?.close();
  });

  it('is a generic 409 with a short Retry-After hint by default, without the key', async () => {
    ({ app, testing } = await start());
    const holder = await testing.hold('plain:secret-id', { ttl: 30_000 });
    const res = await request(app.getHttpServer()).get('/plain/secret-id').expect(409);
    expect(res.body).toEqual({
      statusCode: 409,
      error: 'Conflict',
      message: 'The resource is busy; try again later.',
    });
    expect(res.headers['retry-after']).toBe('1');
    expect(JSON.stringify(res.body)).not.toContain('secret-id');
    await holder.release();
    await request(app.getHttpServer()).get('/plain/secret-id').expect(200);
  });

  it("takes @Locked's own message and hint, in whole seconds rounded up", async () => {
    ({ app, testing } = await start());
    const holder = await testing.hold('custom:1');
    const res = await request(app.getHttpServer()).get('/custom/1').expect(409);
    expect(res.body.message).toBe('Exporting; come back.');
    expect(res.headers['retry-after']).toBe('5');
    await holder.release();
  });

  it("takes the module's defaults where @Locked sets none", async () => {
    ({ app, testing } = await start({ busyRetryAfter: 10_000, busyMessage: 'Busy, sorry.' }));
    const holder = await testing.hold(['plain:2', 'custom:2']);
    const plain = await request(app.getHttpServer()).get('/plain/2').expect(409);
    expect([plain.body.message, plain.headers['retry-after']]).toEqual(['Busy, sorry.', '10']);
    const custom = await request(app.getHttpServer()).get('/custom/2').expect(409);
    expect([custom.body.message, custom.headers['retry-after']]).toEqual([
      'Exporting; come back.',
      '5',
    ]);
    await holder.release();
  });

  it("keeps a service's @Locked message when the global interceptor maps its busy lock", async () => {
    ({ app, testing } = await start());
    const holder = await testing.hold('report:2025');
    const res = await request(app.getHttpServer()).get('/reports/2025').expect(409);
    expect(res.body.message).toBe('This report is being rebuilt.');
    await holder.release();
    await request(app.getHttpServer()).get('/reports/2025').expect(200, 'rebuilt 2025');
  });

  it('answers 503 with the Retry-After hint while the app is shutting down', async () => {
    ({ app, testing } = await start({ shutdownGrace: 10_000 }));
    const locks = app.get(LockService);
    const running = await locks.acquire('work-in-flight');
    const closing = app.close();
    // Shutdown waits for the lock in flight; meanwhile the server answers, and refuses new locks.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const res = await request(app.getHttpServer()).get('/plain/3').expect(503);
    expect(res.body.message).toBe('The service is shutting down; try again.');
    expect(res.headers['retry-after']).toBe('1');
    expect(running.held).toBe(true);
    await running.release();
    await closing;
  });

  it("passes the handler's own ConflictException through unchanged", async () => {
    ({ app } = await start());
    const res = await request(app.getHttpServer()).get('/paid/9').expect(409);
    expect(res.body.message).toBe('order 9 is already paid');
    expect(res.headers['retry-after']).toBeUndefined();
  });

  it('rejects a bad message or hint when the class is defined or the module built', async () => {
    expect(() => Locked('k', { busyMessage: '' })).toThrow(
      /busyMessage must be a non-empty string/,
    );
    expect(() => Locked('k', { busyRetryAfter: -1 })).toThrow(/busyRetryAfter/);
    await expect(start({ busyRetryAfter: Number.NaN })).rejects.toThrow(
      /DistributedLockModule: busyRetryAfter/,
    );
  });
});
