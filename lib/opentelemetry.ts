/**
 * `nestjs-distributed-lock/opentelemetry`: spans around lock waits and locked sections through
 * `@opentelemetry/api` (an optional peer dependency, needed only by this entry point).
 *
 * @module nestjs-distributed-lock/opentelemetry
 */
export {
  instrumentLockTracing,
  lockTracing,
  TRACER_NAME,
} from './observability/opentelemetry/lock.tracing';
export type { LockTracingOptions } from './observability/opentelemetry/lock.tracing';
export {
  DistributedLockTracingModule,
  LockTracingInstaller,
} from './observability/opentelemetry/lock-tracing.module';
