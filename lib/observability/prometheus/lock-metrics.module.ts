import {
  DynamicModule,
  InjectionToken,
  ModuleMetadata,
  OptionalFactoryDependency,
  Inject,
  Injectable,
  Module,
  OnApplicationShutdown,
  OnModuleInit,
} from '@nestjs/common';
import { LockService } from '../../service/lock.service';
import { LockMetricsOptions, registerLockMetrics } from './lock.metrics';

const METRICS_OPTIONS = Symbol('distributedLock.metricsOptions');

/** Options of `DistributedLockPrometheusModule.forRootAsync`: a factory of {@link LockMetricsOptions}. */
export interface LockMetricsAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  /** Providers injected into `useFactory` (for instance the application's `Registry`). */
  inject?: (InjectionToken | OptionalFactoryDependency)[];
  /** Builds the options; may be async. */
  useFactory: (...args: never[]) => LockMetricsOptions | Promise<LockMetricsOptions>;
}

/** Keeps the lock metrics of the application's `LockService` while the application runs. */
@Injectable()
export class LockMetricsRecorder implements OnModuleInit, OnApplicationShutdown {
  private stop: (() => void) | undefined;

  constructor(
    private readonly locks: LockService,
    @Inject(METRICS_OPTIONS) private readonly options: LockMetricsOptions,
  ) {}

  /** Called by Nest: registers the metrics and starts recording. */
  onModuleInit(): void {
    this.stop ??= registerLockMetrics(this.locks, this.options);
  }

  /**
   * Called by Nest after the locks' own shutdown (releases and losses of the grace period are
   * counted): stops recording; the metrics stay registered on the registry.
   */
  onApplicationShutdown(): void {
    this.stop?.();
    this.stop = undefined;
  }
}

/**
 * Records lock metrics on a prom-client registry (see {@link registerLockMetrics}). Import it
 * next to `DistributedLockModule`; needs the optional peer dependency `prom-client`. Serving
 * `/metrics` stays the application's: `registry.metrics()` with `registry.contentType`.
 */
@Module({})
export class DistributedLockPrometheusModule {
  /**
   * Registers the lock metrics on the registry and records every lock event of the application's
   * `LockService` into them.
   *
   * @param options the registry (default: prom-client's global one), the metric name prefix
   *   (default `'distributed_lock_'`), the most lock names kept as labels (default 100) and the
   *   histogram buckets in seconds
   */
  static forRoot(options: LockMetricsOptions = {}): DynamicModule {
    return {
      module: DistributedLockPrometheusModule,
      providers: [{ provide: METRICS_OPTIONS, useValue: options }, LockMetricsRecorder],
      exports: [LockMetricsRecorder],
    };
  }

  /** Like {@link forRoot}, with the options built by `useFactory` from injected providers. */
  static forRootAsync(options: LockMetricsAsyncOptions): DynamicModule {
    return {
      module: DistributedLockPrometheusModule,
      imports: options.imports ?? [],
      providers: [
        {
          provide: METRICS_OPTIONS,
          useFactory: options.useFactory,
          inject: options.inject ?? [],
        },
        LockMetricsRecorder,
      ],
      exports: [LockMetricsRecorder],
    };
  }
}
