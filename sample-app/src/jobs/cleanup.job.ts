import { Injectable, Logger } from '@nestjs/common';
import { Cron, CronExpression } from '@nestjs/schedule';
import { Locked } from 'nestjs-distributed-lock';

/** Runs on every instance's schedule; only the instance that gets the lock does the work. */
@Injectable()
export class CleanupJob {
  private readonly logger = new Logger(CleanupJob.name);
  runs = 0;

  @Cron(CronExpression.EVERY_10_SECONDS, { name: 'cleanup' })
  @Locked('job:cleanup', { wait: 0, onBusy: 'skip', ttl: 20_000 })
  async run(): Promise<void> {
    this.runs++;
    this.logger.log(`cleanup run #${this.runs}`);
  }
}
