import { ConflictException, Injectable } from '@nestjs/common';
import { LockService } from 'nestjs-distributed-lock';

/** Manual locking with LockService.withLock: moving stock locks both SKUs, all-or-none. */
@Injectable()
export class InventoryService {
  private readonly stock = new Map<string, number>([
    ['apple', 10],
    ['pear', 10],
  ]);

  constructor(private readonly locks: LockService) {}

  move(from: string, to: string, quantity: number): Promise<Record<string, number>> {
    return this.locks.withLock([`sku:${from}`, `sku:${to}`], async (lock) => {
      const available = this.stock.get(from) ?? 0;
      if (available < quantity) throw new ConflictException(`only ${available} ${from} left`);
      await new Promise((resolve) => setTimeout(resolve, 10));
      lock.signal.throwIfAborted();
      this.stock.set(from, available - quantity);
      this.stock.set(to, (this.stock.get(to) ?? 0) + quantity);
      return Object.fromEntries(this.stock);
    });
  }
}
