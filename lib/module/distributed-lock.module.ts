import { DynamicModule, Module, Provider } from '@nestjs/common';
import { LockService } from '../service/lock.service';
import { DISTRIBUTED_LOCK_OPTIONS, DISTRIBUTED_LOCK_RUNTIME } from './distributed-lock.constants';
import type {
  DistributedLockModuleAsyncOptions,
  DistributedLockModuleOptions,
  DistributedLockOptionsFactory,
} from './distributed-lock.options';
import { createLockRuntime } from './lock-runtime.factory';

const runtimeProvider: Provider = {
  provide: DISTRIBUTED_LOCK_RUNTIME,
  useFactory: createLockRuntime,
  inject: [DISTRIBUTED_LOCK_OPTIONS],
};

/**
 * Registers `LockService` (global by default) on the configured backend.
 *
 * Options are validated at bootstrap: an invalid ttl, wait, key prefix or backend type stops the
 * application with a clear message. At shutdown (`app.close()`), held locks are released in
 * `beforeApplicationShutdown` and a backend the module created is closed afterwards.
 */
@Module({})
export class DistributedLockModule {
  /** Configures the module with static options. */
  static forRoot(options: DistributedLockModuleOptions = {}): DynamicModule {
    return {
      module: DistributedLockModule,
      global: options.isGlobal ?? true,
      providers: [
        { provide: DISTRIBUTED_LOCK_OPTIONS, useValue: options },
        runtimeProvider,
        LockService,
      ],
      exports: [LockService],
    };
  }

  /** Configures the module with options built by a factory, a class or an existing provider. */
  static forRootAsync(options: DistributedLockModuleAsyncOptions): DynamicModule {
    const sources = [options.useFactory, options.useClass, options.useExisting].filter(Boolean);
    if (sources.length !== 1) {
      throw new TypeError(
        'DistributedLockModule.forRootAsync needs exactly one of useFactory, useClass, useExisting',
      );
    }
    const providers: Provider[] = [runtimeProvider, LockService];
    if (options.useFactory) {
      providers.push({
        provide: DISTRIBUTED_LOCK_OPTIONS,
        useFactory: options.useFactory as (...args: unknown[]) => DistributedLockModuleOptions,
        inject: options.inject ?? [],
      });
    } else {
      const factoryClass = (options.useClass ?? options.useExisting) as NonNullable<
        typeof options.useClass
      >;
      if (options.useClass) providers.push({ provide: factoryClass, useClass: factoryClass });
      providers.push({
        provide: DISTRIBUTED_LOCK_OPTIONS,
        useFactory: (factory: DistributedLockOptionsFactory) =>
          factory.createDistributedLockOptions(),
        inject: [factoryClass],
      });
    }
    return {
      module: DistributedLockModule,
      global: options.isGlobal ?? true,
      imports: options.imports ?? [],
      providers,
      exports: [LockService],
    };
  }
}
