import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckResult, HealthCheckService } from '@nestjs/terminus';
import { LockHealthIndicator } from 'nestjs-distributed-lock/terminus';

/** GET /health: 200 while the lock backend answers a ping and an acquire + release within 1 s, else 503. */
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly lockHealth: LockHealthIndicator,
  ) {}

  @Get()
  @HealthCheck()
  check(): Promise<HealthCheckResult> {
    return this.health.check([() => this.lockHealth.isHealthy('lock', { timeout: 1000 })]);
  }
}
