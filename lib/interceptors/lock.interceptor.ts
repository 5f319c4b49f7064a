import {
  CallHandler,
  ConflictException,
  ExecutionContext,
  Inject,
  Injectable,
  NestInterceptor,
  Optional,
  ServiceUnavailableException,
} from '@nestjs/common';
import { catchError, Observable, throwError } from 'rxjs';
import { LockNotAcquiredError } from '../errors/lock-not-acquired.error';
import { LockShutdownError } from '../errors/lock-shutdown.error';
import {
  DEFAULT_BUSY_MESSAGE,
  DEFAULT_BUSY_RETRY_AFTER,
} from '../module/distributed-lock.constants';
import { LockService } from '../service/lock.service';
import { BusyResponse, busyResponseOf } from './busy.response';

interface HeaderSink {
  setHeader?(name: string, value: string): unknown;
  header?(name: string, value: string): unknown;
}

const BUILT_IN: BusyResponse = {
  retryAfter: DEFAULT_BUSY_RETRY_AFTER,
  message: DEFAULT_BUSY_MESSAGE,
};

/**
 * Turns a busy lock into HTTP 409 Conflict with the standard Nest error body and a `Retry-After`
 * header: the message and the hint (default `'The resource is busy; try again later.'` and 1 s)
 * come from `@Locked`'s `busyMessage` / `busyRetryAfter`, else the module's. A lock refused
 * because the app is shutting down answers 503 Service Unavailable. Other errors, including the
 * handler's own `ConflictException`, pass through unchanged.
 *
 * `@Locked` applies it to its method automatically (it only acts on controller handlers). Register
 * it globally (`APP_INTERCEPTOR`) to also map busy locks taken inside services.
 */
@Injectable()
export class LockInterceptor implements NestInterceptor {
  constructor(@Optional() @Inject(LockService) private readonly locks?: LockService) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(
      catchError((err: unknown) => {
        if (context.getType() !== 'http') return throwError(() => err);
        if (err instanceof LockShutdownError) {
          // Another instance can serve it: the same short hint as a busy lock.
          setRetryAfter(context, (this.locks?.busyResponse ?? BUILT_IN).retryAfter);
          return throwError(
            () =>
              new ServiceUnavailableException('The service is shutting down; try again.', {
                cause: err,
              }),
          );
        }
        if (!(err instanceof LockNotAcquiredError)) return throwError(() => err);
        const busy = busyResponseOf(err, this.locks?.busyResponse ?? BUILT_IN);
        setRetryAfter(context, busy.retryAfter);
        return throwError(
          () => new ConflictException(busy.message, { cause: err, description: 'Conflict' }),
        );
      }),
    );
  }
}

/** Sets `Retry-After` in whole seconds (at least 1), on Express or Fastify. */
function setRetryAfter(context: ExecutionContext, ms: number): void {
  const response = context.switchToHttp().getResponse<HeaderSink>();
  const seconds = String(Math.max(1, Math.ceil(ms / 1000)));
  if (typeof response?.setHeader === 'function') response.setHeader('Retry-After', seconds);
  else if (typeof response?.header === 'function') response.header('Retry-After', seconds);
}
