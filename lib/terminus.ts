/**
 * `nestjs-distributed-lock/terminus`: a `@nestjs/terminus` health indicator for the lock backend.
 * Needs `@nestjs/terminus` 11 (an optional peer: nothing else in the package imports it).
 *
 * ```ts
 * @Module({
 *   imports: [TerminusModule, DistributedLockModule.forRoot({ backend: { type: 'redis', url } })],
 *   controllers: [HealthController],
 *   providers: [LockHealthIndicator],
 * })
 * export class AppModule {}
 *
 * // in HealthController, a @Get() @HealthCheck() route:
 * return this.health.check([() => this.lockHealth.isHealthy('lock', { timeout: 1000 })]);
 * ```
 *
 * @module nestjs-distributed-lock/terminus
 */
export { LockHealthIndicator } from './health/lock-health.indicator';
export type { LockHealthDetails } from './health/lock-health.indicator';
export { DEFAULT_LOCK_HEALTH_TIMEOUT } from './health/lock-health.options';
export type { LockHealthCheckOptions } from './health/lock-health.options';
