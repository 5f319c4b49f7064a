import { ConflictException, Injectable, NotFoundException } from '@nestjs/common';
import { Locked, LockService } from 'nestjs-distributed-lock';
import { Payment, PaymentLedger } from './payment.ledger';

export type { Payment } from './payment.ledger';

/**
 * Pays orders. The lock keeps two instances from charging the same order at once; the fencing
 * token, checked by the ledger itself, keeps a writer whose lock expired while it was paused from
 * overwriting the payment of the instance that took the lock after it.
 */
@Injectable()
export class OrdersService {
  constructor(
    private readonly locks: LockService,
    private readonly ledger: PaymentLedger,
  ) {}

  /**
   * Pays an order once. A second concurrent call waits for the lock, then sees it paid. The fence
   * protects the ledger, not the card: a holder paused between the charge and the write could let
   * a second holder charge too, so the charge carries the order as its idempotency key and the
   * gateway charges an order at most once.
   */
  @Locked('order:<orderId>')
  async pay(orderId: string, amount: number): Promise<Payment> {
    if (await this.ledger.find(orderId)) {
      throw new ConflictException(`order ${orderId} is already paid`);
    }
    await this.chargeCard(amount, `order-${orderId}`);
    const lock = this.locks.current();
    // The lock may have been lost while the gateway was slow: never record a payment then.
    lock?.signal.throwIfAborted();
    const payment = {
      orderId,
      amount,
      fencingToken: lock?.fencingToken ?? 0,
      paidAt: new Date().toISOString(),
    };
    // The check above can still be late (a pause right here): the ledger has the last word.
    if ((await this.ledger.record(payment)) === 'stale') {
      throw new ConflictException(`order ${orderId} was written by a newer lock holder`);
    }
    return payment;
  }

  async find(orderId: string): Promise<Payment> {
    const payment = await this.ledger.find(orderId);
    if (!payment) throw new NotFoundException(`order ${orderId} is not paid`);
    return payment;
  }

  private chargeCard(_amount: number, _idempotencyKey: string): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, 50)); // the payment gateway's latency
  }
}
