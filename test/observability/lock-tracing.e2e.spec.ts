import { Injectable } from '@nestjs/common';
import { context, SpanStatusCode } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { Locked, LockLostError, LockService } from 'nestjs-distributed-lock';
import {
  DistributedLockTracingModule,
  instrumentLockTracing,
} from 'nestjs-distributed-lock/opentelemetry';
import { createLockApp } from '../support/test-app';
import { redisUrl } from '../support/test-env';
import { uniqueId } from '../support/test-ids';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = provider.getTracer('test');
const contextManager = new AsyncLocalStorageContextManager();

@Injectable()
class Jobs {
  constructor(readonly locks: LockService) {}

  /** Starts a span of its own inside the locked section, after an await. */
  @Locked('job:<id>', { wait: 0 })
  async run(id: string): Promise<{ id: string; token: number }> {
    await new Promise((resolve) => setTimeout(resolve, 5));
    tracer.startSpan('inner work').end();
    return { id, token: this.locks.current()?.fencingToken ?? -1 };
  }
}

function spansNamed(name: string) {
  return exporter.getFinishedSpans().filter((span) => span.name === name);
}

describe('lock tracing (OpenTelemetry), on Redis', () => {
  let app: Awaited<ReturnType<typeof createLockApp>>;

  beforeAll(async () => {
    context.setGlobalContextManager(contextManager.enable());
    app = await createLockApp(
      { backend: { type: 'redis', url: redisUrl() }, keyPrefix: `ndl-test:otel:${uniqueId()}:` },
      { imports: [DistributedLockTracingModule.forRoot({ tracer })], providers: [Jobs] },
    );
  });

  afterAll(async () => {
    await app?.app.close();
    context.disable();
  });

  beforeEach(() => exporter.reset());

  it('opens an acquire span and a hold span that is the parent of the work’s own spans', async () => {
    const id = uniqueId();
    const { token } = await tracer.startActiveSpan('request', async (request) => {
      try {
        return await app.get(Jobs).run(id);
      } finally {
        request.end();
      }
    });
    const [requestSpan] = spansNamed('request');
    const [acquire] = spansNamed('lock.acquire job:<id>');
    const [hold] = spansNamed('lock.hold job:<id>');
    const [inner] = spansNamed('inner work');
    expect(acquire).toBeDefined();
    expect(hold).toBeDefined();
    expect(inner).toBeDefined();
    // Both lock spans belong to the caller's trace; the work's span is a child of the hold span.
    expect(acquire.parentSpanContext?.spanId).toBe(requestSpan.spanContext().spanId);
    expect(hold.parentSpanContext?.spanId).toBe(requestSpan.spanContext().spanId);
    expect(inner.parentSpanContext?.spanId).toBe(hold.spanContext().spanId);
    expect(acquire.attributes).toMatchObject({
      'lock.name': 'job:<id>',
      'lock.backend': 'redis',
      'lock.key_count': 1,
      'lock.outcome': 'acquired',
    });
    expect(hold.attributes).toMatchObject({
      'lock.outcome': 'released',
      'lock.fencing_token': token,
    });
    expect(token).toBeGreaterThan(0);
    // No raw key unless asked for.
    expect(JSON.stringify([acquire.attributes, hold.attributes])).not.toContain(id);
  });

  it('marks a busy lock as an outcome, not an error, and a lost lock as an error', async () => {
    const key = `busy:${uniqueId()}`;
    const holder = await app.locks.acquire(key);
    await expect(app.locks.tryAcquire(key, { name: 'busy-job' })).resolves.toBeNull();
    await holder.release();
    const [busy] = spansNamed('lock.acquire busy-job');
    expect(busy.attributes['lock.outcome']).toBe('busy');
    expect(busy.status.code).not.toBe(SpanStatusCode.ERROR);

    await expect(
      app.locks.withLock(
        `lost:${uniqueId()}`,
        (lock) =>
          new Promise<void>((resolve) => lock.signal.addEventListener('abort', () => resolve())),
        { name: 'stuck-job', maxHold: 50 },
      ),
    ).rejects.toBeInstanceOf(LockLostError);
    const [lost] = spansNamed('lock.hold stuck-job');
    expect(lost.attributes['lock.outcome']).toBe('lost');
    expect(lost.status.code).toBe(SpanStatusCode.ERROR);
    expect(lost.events.some((event) => event.name === 'exception')).toBe(true);
  });

  it('records the raw keys only when asked, and stops tracing once removed', async () => {
    const remove = instrumentLockTracing(app.locks, { tracer, recordKeys: true });
    const key = `keyed:${uniqueId()}`;
    await app.locks.withLock(key, () => undefined, { name: 'keyed' });
    expect(spansNamed('lock.acquire keyed')[0].attributes['lock.keys']).toEqual([key]);
    remove();
    exporter.reset();
    await app.locks.withLock(key, () => undefined, { name: 'keyed' });
    expect(exporter.getFinishedSpans()).toHaveLength(0);
  });
});
