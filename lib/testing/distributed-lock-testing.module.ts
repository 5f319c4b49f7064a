import { DynamicModule, Module } from '@nestjs/common';
import { ModulesContainer } from '@nestjs/core';
import type { LockBackend } from '../backends/lock-backend.interface';
import { MemoryLockBackend } from '../backends/memory/memory.backend';
import { assertKnownOptions } from '../engine/lock-options.validator';
import { DistributedLockModule } from '../module/distributed-lock.module';
import type { DistributedLockModuleOptions } from '../module/distributed-lock.options';
import { LockService } from '../service/lock.service';
import { LockTesting } from './lock-testing.service';

/**
 * Options of {@link DistributedLockTestingModule.forRoot}: the module's, without the backend
 * (always a fresh in-memory one). `shutdownGrace` defaults to 0 here, so closing a test module
 * never waits for a lock a test left held.
 */
export type DistributedLockTestingOptions = Omit<
  DistributedLockModuleOptions,
  'backend' | 'isGlobal' | 'checkBackend'
>;

const TESTING_OPTIONS = [
  'keyPrefix',
  'ttl',
  'wait',
  'shutdownGrace',
  'busyRetryAfter',
  'busyMessage',
] as const;

const KIT_BACKEND = Symbol('DistributedLockTestingModule.backend');

// A provider, not a value made in forRoot(): one `forRoot()` result shared by several test
// modules (a module-level `imports` constant) still gives each its own backend.
@Module({
  providers: [{ provide: KIT_BACKEND, useFactory: (): LockBackend => new MemoryLockBackend() }],
  exports: [KIT_BACKEND],
})
class TestingBackendModule {}

/**
 * `DistributedLockModule` for unit tests: each test module gets its own in-memory backend, so
 * tests never share locks, and provides {@link LockTesting} to see the locks taken and make keys
 * busy. Import it in `Test.createTestingModule({ imports: [...] })` of any provider that uses
 * `@Locked` or `LockService`, instead of `DistributedLockModule`. Global, like the module it
 * stands for.
 */
@Module({})
export class DistributedLockTestingModule {
  /**
   * @throws TypeError for an unknown or invalid option, when the test module is built
   */
  static forRoot(options: DistributedLockTestingOptions = {}): DynamicModule {
    assertKnownOptions(options, TESTING_OPTIONS, 'DistributedLockTestingModule options');
    return {
      module: DistributedLockTestingModule,
      global: true,
      imports: [
        TestingBackendModule,
        DistributedLockModule.forRootAsync({
          imports: [TestingBackendModule],
          inject: [KIT_BACKEND],
          useFactory: (backend: LockBackend) => ({ shutdownGrace: 0, ...options, backend }),
        }),
      ],
      providers: [
        {
          provide: LockTesting,
          useFactory: (locks: LockService, backend: LockBackend, modules: ModulesContainer) => {
            assertOnlyLockModule(modules);
            return new LockTesting(locks, backend);
          },
          inject: [LockService, KIT_BACKEND, ModulesContainer],
        },
      ],
      exports: [LockTesting],
    };
  }
}

/**
 * Two lock modules in one application mean two global `LockService`s, and Nest would give the
 * application's classes either one: the kit would silently watch the wrong one.
 */
function assertOnlyLockModule(modules: ModulesContainer): void {
  let count = 0;
  for (const module of modules.values()) if (module.metatype === DistributedLockModule) count++;
  if (count > 1) {
    throw new Error(
      'DistributedLockTestingModule: this test module also imports DistributedLockModule ' +
        '(through an application module?). Import the kit instead of it: build the test module ' +
        'from the feature modules and providers under test, or let the application module take ' +
        'its lock module as a parameter.',
    );
  }
}
