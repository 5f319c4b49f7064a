import { Controller, Param, ParseIntPipe, Post } from '@nestjs/common';
import { Locked, LockService } from 'nestjs-distributed-lock';

/** An endpoint guarded directly by @Locked: a second rebuild of the same year answers 409. */
@Controller('reports')
export class ReportsController {
  constructor(private readonly locks: LockService) {}

  @Post(':year/rebuild')
  @Locked('report:<year>', { wait: 0, ttl: 10_000 })
  async rebuild(
    @Param('year', ParseIntPipe) year: number,
  ): Promise<{ year: number; fencingToken?: number }> {
    await new Promise((resolve) => setTimeout(resolve, 200)); // the slow part
    return { year, fencingToken: this.locks.current()?.fencingToken };
  }
}
