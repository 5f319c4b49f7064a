import {
  Controller,
  Get,
  INestApplication,
  Injectable,
  NotFoundException,
  Param,
  ParseIntPipe,
  PipeTransform,
  Post,
  SetMetadata,
} from '@nestjs/common';
import { PATH_METADATA, METHOD_METADATA } from '@nestjs/common/constants';
import { Cron, ScheduleModule, SchedulerRegistry } from '@nestjs/schedule';
import { Observable, timer, map } from 'rxjs';
import request from 'supertest';
import {
  Locked,
  LockNotAcquiredError,
  LockService,
  LockBackendError,
} from 'nestjs-distributed-lock';
import { deferred, eventually, sleep, within } from '../support/async.helpers';
import { ObservedBackend } from '../support/observed.backend';
import { createLockApp } from '../support/test-app';
import { closeTestBackends, startTestBackend, TEST_BACKENDS } from '../support/test-backends';
import { uniqueKey } from '../support/test-ids';

const RUN = uniqueKey('run'); // keeps keys apart between backends and runs

class UpperPipe implements PipeTransform<string, string> {
  transform(value: string): string {
    return value.toUpperCase();
  }
}

@Injectable()
class PaymentService {
  inside = 0;
  maxInside = 0;
  paid: string[] = [];
  /** Owner token of the grant the last pay() ran under. */
  lastToken: string | undefined;
  gate: Promise<void> | undefined;
  constructor(readonly locks: LockService) {}

  @Locked(`${RUN}:order:<orderId>`, { wait: 10_000 })
  async pay(orderId: string, amount: number): Promise<string> {
    this.inside++;
    this.maxInside = Math.max(this.maxInside, this.inside);
    await (this.gate ?? sleep(2));
    this.inside--;
    this.paid.push(`${orderId}:${amount}`);
    this.lastToken = this.locks.current()?.token;
    return this.locks.current()?.key ?? 'no lock';
  }

  @Locked(`${RUN}:order:<orderId>`)
  async refund(orderId: string): Promise<string | undefined> {
    // Re-enters the lock pay() would take on the same order: no deadlock, same grant.
    await this.pay(orderId, -1);
    return this.locks.current()?.token;
  }

  @Locked(`${RUN}:cust:<0.customer.id>:<1>`)
  // eslint-disable-next-line @typescript-eslint/no-unused-vars -- the key template reads them
  async byPath(_order: { customer: { id: number } }, region: string): Promise<string | undefined> {
    return this.locks.current()?.key;
  }

  // One lock over two keys: a common start ending in `}` puts them in one Redis Cluster slot.
  @Locked([`${RUN}:{acct}:<from>`, `${RUN}:{acct}:<to>`])
  // eslint-disable-next-line @typescript-eslint/no-unused-vars -- the key template reads them
  async transfer(from: string, to: string): Promise<readonly string[] | undefined> {
    return this.locks.current()?.keys;
  }

  @Locked((id: number) => `${RUN}:fn:${id * 2}`)
  // eslint-disable-next-line @typescript-eslint/no-unused-vars -- the key template reads them
  async byFunction(id: number): Promise<string | undefined> {
    return this.locks.current()?.key;
  }

  @Locked(`${RUN}:busy`, { wait: 0, onBusy: 'skip' })
  async skipWhenBusy(): Promise<string> {
    return 'ran';
  }
}

@Injectable()
class CronJobs {
  runs = 0;
  gate: Promise<void> | undefined;

  @Cron('0 0 1 1 *', { name: 'locked-below' })
  @Locked(`${RUN}:cron:below`, { wait: 0, onBusy: 'skip' })
  async lockedBelowCron(): Promise<void> {
    this.runs++;
    await this.gate;
  }

  @Locked(`${RUN}:cron:above`, { wait: 0, onBusy: 'skip' })
  @Cron('0 0 1 1 *', { name: 'locked-above' })
  @SetMetadata('custom', 'kept')
  async lockedAboveCron(): Promise<void> {
    this.runs++;
    await this.gate;
  }
}

@Controller('orders')
class OrdersController {
  gate: Promise<void> | undefined;
  entered = deferred();
  constructor(private readonly locks: LockService) {}

  @Post(':id/pay')
  @Locked(`${RUN}:http:<id>`, { wait: 0 })
  async pay(@Param('id', ParseIntPipe) id: number): Promise<{ key?: string; idType: string }> {
    this.entered.resolve();
    await this.gate;
    return { key: this.locks.current()?.key, idType: typeof id };
  }

  @Locked(`${RUN}:http:name:<name>`, { wait: 0 })
  @Get('by-name/:name')
  async byName(@Param('name', UpperPipe) name: string): Promise<{ key?: string }> {
    return { key: this.locks.current()?.key ?? name };
  }

  @Get(':id/missing')
  @Locked(`${RUN}:http:missing:<id>`)
  async missing(@Param('id') id: string): Promise<never> {
    throw new NotFoundException(`order ${id} not found`);
  }

  @Get(':id/stream')
  @Locked(`${RUN}:http:stream:<id>`)
  stream(@Param('id') id: string): Observable<{ id: string; held: boolean }> {
    return timer(150).pipe(map(() => ({ id, held: this.locks.current() !== undefined })));
  }
}

describe.each(TEST_BACKENDS)('@Locked on $name', (testBackend) => {
  let app: INestApplication;
  let otherApp: INestApplication;
  let backend: ObservedBackend;
  let other: LockService;
  let payments: PaymentService;
  let controller: OrdersController;
  let cron: CronJobs;
  let stopBackend: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    stopBackend = await startTestBackend(testBackend);
    backend = new ObservedBackend(testBackend.connect());
    const created = await createLockApp(
      { backend, wait: 2000 },
      {
        imports: [ScheduleModule.forRoot()],
        providers: [PaymentService, CronJobs],
        controllers: [OrdersController],
      },
    );
    app = created.app;
    payments = created.get(PaymentService);
    controller = created.get(OrdersController);
    cron = created.get(CronJobs);
    const second = await createLockApp({ backend: testBackend.connect() });
    otherApp = second.app;
    other = second.locks;
  });

  afterAll(async () => {
    try {
      await app.close();
      await otherApp.close();
      await backend.close();
    } finally {
      await stopBackend?.();
    }
  });

  it('never overlaps calls for the same order and runs different orders in parallel', async () => {
    payments.inside = payments.maxInside = 0;
    const calls = Array.from({ length: 10 }, (_, i) => payments.pay('A', i));
    await within(10_000, Promise.all(calls), 'same-order payments');
    expect(payments.maxInside).toBe(1);

    payments.maxInside = 0;
    const gate = deferred();
    payments.gate = gate.promise;
    const parallel = [payments.pay('B', 1), payments.pay('C', 1)];
    try {
      // Both inside at once: a shared lock would keep one out until the gate opens.
      await eventually(() => payments.inside === 2, 5000, 'two orders inside at once');
    } finally {
      // Else later tests' pay() would wait on this gate forever.
      gate.resolve();
      payments.gate = undefined;
    }
    await Promise.all(parallel);
  });

  it('resolves placeholders from the method arguments: names, indexes, paths, multi-key and functions', async () => {
    expect(await payments.pay('o:1/x', 5)).toBe(`${RUN}:order:o%3A1%2Fx`);
    expect(await payments.byPath({ customer: { id: 7 } }, 'eu')).toBe(`${RUN}:cust:7:eu`);
    expect(await payments.transfer('z', 'a')).toEqual([`${RUN}:{acct}:a`, `${RUN}:{acct}:z`]);
    expect(await payments.byFunction(21)).toBe(`${RUN}:fn:42`);
  });

  it('keeps different argument values apart even when they look alike', async () => {
    const a = await payments.pay('1:2', 0);
    const b = await payments.pay('1%3A2', 0);
    expect(a).not.toBe(b);
  });

  it('rejects arguments that cannot form a key before any backend call', async () => {
    const before = backend.calls.length;
    await expect(payments.pay(undefined as unknown as string, 1)).rejects.toThrow(/orderId/);
    await expect(payments.pay(null as unknown as string, 1)).rejects.toThrow(/orderId/);
    await expect(payments.pay('', 1)).rejects.toThrow(/empty/);
    await expect(payments.pay({ id: 1 } as unknown as string, 1)).rejects.toThrow(/property path/);
    await expect(payments.byPath({} as { customer: { id: number } }, 'eu')).rejects.toThrow(
      /customer/,
    );
    await expect(payments.byPath({ customer: { id: Number.NaN } }, 'eu')).rejects.toThrow(/NaN/);
    expect(backend.calls.length).toBe(before);
  });

  it('re-enters a key the call chain already holds without a second grant', async () => {
    const before = backend.count('acquire');
    payments.lastToken = undefined;
    const token = await within(5000, payments.refund('R'), 'reentrant refund');
    expect(token).toEqual(expect.any(String));
    expect(payments.lastToken).toBe(token);
    expect(backend.count('acquire') - before).toBe(1);
  });

  it("with onBusy: 'skip', returns undefined without running when the lock is busy", async () => {
    const holder = await other.acquire(`${RUN}:busy`);
    expect(await payments.skipWhenBusy()).toBeUndefined();
    await holder.release();
    expect(await payments.skipWhenBusy()).toBe('ran');
  });

  it('works with @Cron in either decorator order, keeping cron and custom metadata', async () => {
    const registry = app.get(SchedulerRegistry);
    const below = registry.getCronJob('locked-below');
    const above = registry.getCronJob('locked-above');
    expect(Reflect.getMetadata('custom', CronJobs.prototype.lockedAboveCron)).toBe('kept');

    const gate = deferred();
    cron.gate = gate.promise;
    cron.runs = 0;
    // Two instances fire at once: the second firing finds the lock busy and skips.
    void below.fireOnTick();
    void above.fireOnTick();
    await eventually(() => cron.runs === 2, 5000, 'first firings ran');
    await eventually(
      async () =>
        (await other.isLocked(`${RUN}:cron:below`)) && (await other.isLocked(`${RUN}:cron:above`)),
      5000,
      'cron locks held',
    );
    await Promise.all([below.fireOnTick(), above.fireOnTick()]);
    await sleep(50);
    expect(cron.runs).toBe(2);
    gate.resolve();
    cron.gate = undefined;
    await eventually(
      async () => !(await other.isLocked(`${RUN}:cron:below`)),
      5000,
      'cron lock released',
    );
    void below.fireOnTick();
    await eventually(() => cron.runs === 3, 5000, 'third firing ran');
  });

  it('keeps route metadata in either decorator order and resolves keys after pipes', async () => {
    expect(Reflect.getMetadata(PATH_METADATA, OrdersController.prototype.pay)).toBe(':id/pay');
    expect(Reflect.getMetadata(METHOD_METADATA, OrdersController.prototype.byName)).toBeDefined();
    const paid = await request(app.getHttpServer()).post('/orders/12/pay').expect(201);
    expect(paid.body).toEqual({ key: `${RUN}:http:12`, idType: 'number' });
    const named = await request(app.getHttpServer()).get('/orders/by-name/ann').expect(200);
    expect(named.body).toEqual({ key: `${RUN}:http:name:ANN` });
  });

  it('answers 409 with the standard error body and Retry-After when the lock is busy', async () => {
    const holder = await other.acquire(`${RUN}:http:13`, { ttl: 5000 });
    const res = await request(app.getHttpServer()).post('/orders/13/pay').expect(409);
    expect(res.body).toEqual({
      statusCode: 409,
      error: 'Conflict',
      message: 'The resource is busy; try again later.',
    });
    // The default hint, not the holder's remaining 5 s; the key stays private.
    expect(res.headers['retry-after']).toBe('1');
    expect(JSON.stringify(res.body)).not.toContain(RUN);
    await holder.release();
  });

  it('answers 409 to a concurrent request for the same resource while the first one runs', async () => {
    const gate = deferred();
    controller.gate = gate.promise;
    controller.entered = deferred();
    const first = request(app.getHttpServer())
      .post('/orders/14/pay')
      .then((r) => r.status);
    await within(5000, controller.entered.promise, 'first request entered');
    await request(app.getHttpServer()).post('/orders/14/pay').expect(409);
    gate.resolve();
    expect(await first).toBe(201);
    controller.gate = undefined;
  });

  it("passes the handler's own exceptions through unchanged and releases the lock", async () => {
    const res = await request(app.getHttpServer()).get('/orders/15/missing').expect(404);
    expect(res.body.message).toBe('order 15 not found');
    expect(await other.isLocked(`${RUN}:http:missing:15`)).toBe(false);
  });

  it('holds the lock until an Observable result completes', async () => {
    const key = `${RUN}:http:stream:16`;
    const pending = request(app.getHttpServer())
      .get('/orders/16/stream')
      .then((r) => r.body as unknown);
    await sleep(60);
    expect(await other.isLocked(key)).toBe(true);
    expect(await pending).toEqual({ id: '16', held: true });
    expect(await other.isLocked(key)).toBe(false);
  });

  it('surfaces backend failures as LockBackendError, never as busy', async () => {
    const broken = new ObservedBackend(testBackend.connect());
    broken.acquire = async () => {
      throw new Error('connection refused (injected)');
    };
    const { app: brokenApp, locks } = await createLockApp({ backend: broken });
    try {
      const err = await locks.acquire(uniqueKey()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LockBackendError);
      expect(err).not.toBeInstanceOf(LockNotAcquiredError);
    } finally {
      await brokenApp.close();
    }
  });
});

describe('@Locked at class definition', () => {
  it('fails fast on a placeholder that names no parameter', () => {
    expect(() => {
      class Bad {
        @Locked('order:<orderID>')
        async pay(orderId: string): Promise<string> {
          return orderId;
        }
      }
      return Bad;
    }).toThrow(/<orderID> names no parameter.*orderId/);
  });

  it('fails fast on an index past the parameters and on ambiguous templates', () => {
    expect(() => {
      class Bad {
        @Locked('x:<2>')
        async run(a: string): Promise<string> {
          return a;
        }
      }
      return Bad;
    }).toThrow(/argument #2/);
    expect(() => {
      class Bad {
        @Locked('x:<a><b>')
        async run(a: string, b: string): Promise<string> {
          return a + b;
        }
      }
      return Bad;
    }).toThrow(/separated/);
  });

  it('rejects invalid options', () => {
    expect(() => Locked('k', { ttl: -1 })).toThrow(/ttl/);
    expect(() => Locked('k', { onBusy: 'wait' as 'skip' })).toThrow(/onBusy/);
  });

  it('fails clearly when the class is not managed by Nest', async () => {
    class Manual {
      @Locked('m:<id>')
      async run(id: string): Promise<string> {
        return id;
      }
    }
    await expect(new Manual().run('1')).rejects.toThrow(/no LockService was injected/);
  });
});

afterAll(() => closeTestBackends());
