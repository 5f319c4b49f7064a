import { DynamicModule, Module } from '@nestjs/common';
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

/**
 * `DistributedLockModule` for unit tests: each `forRoot()` gets its own in-memory backend, so
 * tests never share locks, and provides {@link LockTesting} to see the locks taken and make keys
 * busy. Import it in `Test.createTestingModule({ imports: [...] })` of any provider that uses
 * `@Locked` or `LockService`. Global, like the module it stands for.
 */
@Module({})
export class DistributedLockTestingModule {
  /**
   * @throws TypeError for an unknown or invalid option, when the test module is built
   */
  static forRoot(options: DistributedLockTestingOptions = {}): DynamicModule {
    assertKnownOptions(options, TESTING_OPTIONS, 'DistributedLockTestingModule options');
    const backend = new MemoryLockBackend();
    return {
      module: DistributedLockTestingModule,
      global: true,
      imports: [DistributedLockModule.forRoot({ shutdownGrace: 0, ...options, backend })],
      providers: [
        {
          provide: LockTesting,
          useFactory: (locks: LockService) => new LockTesting(locks, backend),
          inject: [LockService],
        },
      ],
      exports: [LockTesting],
    };
  }
}
