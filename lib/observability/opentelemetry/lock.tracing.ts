import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { Attributes, Span, Tracer } from '@opentelemetry/api';
import { LockLostError } from '../../errors/lock-lost.error';
import { LockNotAcquiredError } from '../../errors/lock-not-acquired.error';
import type { LockService } from '../../service/lock.service';
import type { LockCallInfo, LockInstrumentation } from '../lock.instrumentation';

/** Options of {@link instrumentLockTracing} and `DistributedLockTracingModule`. */
export interface LockTracingOptions {
  /** The tracer spans are made with. Default: `trace.getTracer('nestjs-distributed-lock')`. */
  tracer?: Tracer;
  /**
   * Record the raw lock keys as the span attribute `lock.keys`. Keys may carry user data (an
   * email, an order id), so they are left out unless asked for. Default false.
   */
  recordKeys?: boolean;
}

/** The instrumentation scope of the spans. */
export const TRACER_NAME = 'nestjs-distributed-lock';

/**
 * Opens an OpenTelemetry span around each wait for a lock (`lock.acquire <name>`) and one around
 * each locked section of `withLock` and `@Locked` methods (`lock.hold <name>`), the second being
 * the active context of the work, so spans the work starts are its children. Attributes:
 * `lock.name`, `lock.backend`, `lock.key_count`, `lock.outcome` (acquired, busy, error; released,
 * lost, failed), `lock.fencing_token` where the backend issues one, and `lock.keys` only with
 * `recordKeys`. A busy lock is an outcome, not an error; a backend failure or a loss sets the
 * span's status to ERROR. Replaces any instrumentation installed before; returns the function
 * that removes it.
 */
export function instrumentLockTracing(
  locks: LockService,
  options: LockTracingOptions = {},
): () => void {
  return locks.instrument(lockTracing(options));
}

/** The instrumentation itself, for a `LockService` or a test. */
export function lockTracing(options: LockTracingOptions = {}): LockInstrumentation {
  const tracer = options.tracer ?? trace.getTracer(TRACER_NAME);
  const recordKeys = options.recordKeys ?? false;
  const attributes = (info: LockCallInfo): Attributes => {
    const attrs: Attributes = {
      'lock.name': info.name ?? 'unnamed',
      'lock.backend': info.backend,
      'lock.key_count': info.keys.length,
    };
    if (recordKeys) attrs['lock.keys'] = [...info.keys];
    return attrs;
  };
  return {
    acquire: (info, acquire) =>
      tracer.startActiveSpan(
        `lock.acquire ${info.name ?? 'unnamed'}`,
        { kind: SpanKind.INTERNAL, attributes: attributes(info) },
        async (span) => {
          try {
            const lock = await acquire();
            span.setAttribute('lock.outcome', 'acquired');
            return lock;
          } catch (err) {
            if (err instanceof LockNotAcquiredError) span.setAttribute('lock.outcome', 'busy');
            else fail(span, err, 'error');
            throw err;
          } finally {
            span.end();
          }
        },
      ),
    work: (info, fencingToken, work) =>
      tracer.startActiveSpan(
        `lock.hold ${info.name ?? 'unnamed'}`,
        { kind: SpanKind.INTERNAL, attributes: attributes(info) },
        async (span) => {
          if (fencingToken !== undefined) span.setAttribute('lock.fencing_token', fencingToken);
          try {
            const result = await work();
            span.setAttribute('lock.outcome', 'released');
            return result;
          } catch (err) {
            fail(span, err, err instanceof LockLostError ? 'lost' : 'failed');
            throw err;
          } finally {
            span.end();
          }
        },
      ),
  };
}

function fail(span: Span, err: unknown, outcome: string): void {
  span.setAttribute('lock.outcome', outcome);
  if (err instanceof Error) span.recordException(err);
  span.setStatus({
    code: SpanStatusCode.ERROR,
    message: err instanceof Error ? err.message : String(err),
  });
}
