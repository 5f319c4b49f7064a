/**
 * `nestjs-distributed-lock/testing`: unit tests of providers that use `@Locked` or `LockService`.
 *
 * ```ts
 * const moduleRef = await Test.createTestingModule({
 *   imports: [DistributedLockTestingModule.forRoot()],
 *   providers: [PaymentsService],
 * }).compile();
 * const testing = moduleRef.get(LockTesting);
 * ```
 *
 * @module nestjs-distributed-lock/testing
 */
export { DistributedLockTestingModule } from './testing/distributed-lock-testing.module';
export type { DistributedLockTestingOptions } from './testing/distributed-lock-testing.module';
export { LockTesting } from './testing/lock-testing.service';
export type { LockGrantRecord } from './testing/lock-testing.service';
