import {
  CallHandler,
  ConflictException,
  ExecutionContext,
  Injectable,
  NestInterceptor,
} from '@nestjs/common';
import { catchError, Observable, throwError } from 'rxjs';
import { LockNotAcquiredError } from '../errors/lock-not-acquired.error';

interface HeaderSink {
  setHeader?(name: string, value: string): unknown;
  header?(name: string, value: string): unknown;
}

/**
 * Turns a busy lock into HTTP 409 Conflict with the standard Nest error body and a `Retry-After`
 * header (whole seconds). Other errors, including the handler's own, pass through unchanged.
 *
 * `@Locked` applies it to its method automatically (it only acts on controller handlers). Register
 * it globally (`APP_INTERCEPTOR`) to also map busy locks taken inside services to 409.
 */
@Injectable()
export class LockInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(
      catchError((err: unknown) => {
        if (!(err instanceof LockNotAcquiredError) || context.getType() !== 'http')
          return throwError(() => err);
        const response = context.switchToHttp().getResponse<HeaderSink>();
        const seconds = String(Math.max(1, Math.ceil((err.retryAfter ?? 1000) / 1000)));
        if (typeof response?.setHeader === 'function') response.setHeader('Retry-After', seconds);
        else if (typeof response?.header === 'function') response.header('Retry-After', seconds);
        return throwError(
          () => new ConflictException(err.message, { cause: err, description: 'Conflict' }),
        );
      }),
    );
  }
}
