import { Module } from '@nestjs/common';
import { ScheduleModule } from '@nestjs/schedule';
import { TerminusModule } from '@nestjs/terminus';
import { DistributedLockModule } from 'nestjs-distributed-lock';
import { DistributedLockPrometheusModule } from 'nestjs-distributed-lock/prometheus';
import { LockHealthIndicator } from 'nestjs-distributed-lock/terminus';
import { Registry } from 'prom-client';
import { lockOptionsFromEnv } from './config/lock-options.factory';
import { paymentLedgerFromEnv } from './config/payment-ledger.factory';
import { InventoryController } from './inventory/inventory.controller';
import { InventoryService } from './inventory/inventory.service';
import { CleanupJob } from './jobs/cleanup.job';
import { HealthController } from './ops/health.controller';
import { MetricsController } from './ops/metrics.controller';
import { MetricsRegistryModule } from './ops/metrics-registry.module';
import { OrdersController } from './orders/orders.controller';
import { OrdersService } from './orders/orders.service';
import { PaymentLedger } from './orders/payment.ledger';
import { ReportsController } from './reports/reports.controller';

@Module({
  imports: [
    ScheduleModule.forRoot(),
    DistributedLockModule.forRootAsync({ useFactory: () => lockOptionsFromEnv(process.env) }),
    TerminusModule.forRoot({ logger: false }),
    MetricsRegistryModule,
    // Lock metrics on the app's registry, served at GET /metrics.
    DistributedLockPrometheusModule.forRootAsync({
      imports: [MetricsRegistryModule],
      inject: [Registry],
      useFactory: (registry: Registry) => ({ registry }),
    }),
  ],
  controllers: [
    OrdersController,
    ReportsController,
    InventoryController,
    MetricsController,
    HealthController,
  ],
  providers: [
    OrdersService,
    InventoryService,
    CleanupJob,
    LockHealthIndicator,
    { provide: PaymentLedger, useFactory: () => paymentLedgerFromEnv(process.env) },
  ],
})
export class AppModule {}
