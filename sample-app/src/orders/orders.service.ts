import { ConflictException, Injectable, NotFoundException } from '@nestjs/common';
import { Locked, LockService } from 'nestjs-distributed-lock';

/** A payment as the ledger records it, with the fencing token of the lock that wrote it. */
export interface Payment {
  orderId: string;
  amount: number;
  fencingToken: number;
  paidAt: string;
}

/**
 * Pays orders. The ledger here is in memory to keep the sample small; in a real app it is the
 * database, and it would reject writes whose fencing token is older than the last one it saw.
 */
@Injectable()
export class OrdersService {
  private readonly ledger = new Map<string, Payment>();

  constructor(private readonly locks: LockService) {}

  /** Charges an order once. A second concurrent call waits for the lock, then sees it paid. */
  @Locked('order:<orderId>')
  async pay(orderId: string, amount: number): Promise<Payment> {
    if (this.ledger.has(orderId)) throw new ConflictException(`order ${orderId} is already paid`);
    await this.chargeCard(amount);
    const lock = this.locks.current();
    // The lock may have been lost while the gateway was slow: never record a payment then.
    lock?.signal.throwIfAborted();
    const payment = {
      orderId,
      amount,
      fencingToken: lock?.fencingToken ?? 0,
      paidAt: new Date().toISOString(),
    };
    this.ledger.set(orderId, payment);
    return payment;
  }

  find(orderId: string): Payment {
    const payment = this.ledger.get(orderId);
    if (!payment) throw new NotFoundException(`order ${orderId} is not paid`);
    return payment;
  }

  private chargeCard(_amount: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, 50)); // the payment gateway's latency
  }
}
