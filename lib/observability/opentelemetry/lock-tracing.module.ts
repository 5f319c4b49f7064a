import {
  DynamicModule,
  Inject,
  Injectable,
  Module,
  OnModuleDestroy,
  OnModuleInit,
} from '@nestjs/common';
import { LockService } from '../../service/lock.service';
import { instrumentLockTracing, LockTracingOptions } from './lock.tracing';

const TRACING_OPTIONS = Symbol('distributedLock.tracingOptions');

/** Installs lock tracing on the application's `LockService` while the application runs. */
@Injectable()
export class LockTracingInstaller implements OnModuleInit, OnModuleDestroy {
  private remove: (() => void) | undefined;

  constructor(
    private readonly locks: LockService,
    @Inject(TRACING_OPTIONS) private readonly options: LockTracingOptions,
  ) {}

  /** Called by Nest: installs the spans. */
  onModuleInit(): void {
    this.remove ??= instrumentLockTracing(this.locks, this.options);
  }

  /** Called by Nest: removes them. */
  onModuleDestroy(): void {
    this.remove?.();
    this.remove = undefined;
  }
}

/**
 * Traces lock waits and locked sections with OpenTelemetry (see {@link instrumentLockTracing}).
 * Import it next to `DistributedLockModule`; needs the optional peer `@opentelemetry/api` and,
 * for spans to be recorded, an OpenTelemetry SDK set up by the application.
 */
@Module({})
export class DistributedLockTracingModule {
  /**
   * Installs the tracing on the application's `LockService` when the module starts.
   *
   * @param options the tracer (default: the global provider's) and whether to record raw keys
   *   (default false)
   */
  static forRoot(options: LockTracingOptions = {}): DynamicModule {
    return {
      module: DistributedLockTracingModule,
      providers: [{ provide: TRACING_OPTIONS, useValue: options }, LockTracingInstaller],
    };
  }
}
