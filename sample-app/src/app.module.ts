import { Module } from '@nestjs/common';
import { ScheduleModule } from '@nestjs/schedule';
import { DistributedLockModule } from 'nestjs-distributed-lock';
import { lockOptionsFromEnv } from './config/lock-options.factory';
import { InventoryController } from './inventory/inventory.controller';
import { InventoryService } from './inventory/inventory.service';
import { CleanupJob } from './jobs/cleanup.job';
import { OrdersController } from './orders/orders.controller';
import { OrdersService } from './orders/orders.service';
import { ReportsController } from './reports/reports.controller';

@Module({
  imports: [
    ScheduleModule.forRoot(),
    DistributedLockModule.forRootAsync({ useFactory: () => lockOptionsFromEnv(process.env) }),
  ],
  controllers: [OrdersController, ReportsController, InventoryController],
  providers: [OrdersService, InventoryService, CleanupJob],
})
export class AppModule {}
