/** A payment as the ledger records it, with the fencing token of the lock that wrote it. */
export interface Payment {
  orderId: string;
  amount: number;
  fencingToken: number;
  paidAt: string;
}

/** What a fenced write did: applied, or refused because a newer lock holder wrote first. */
export type FencedWrite = 'written' | 'stale';

/**
 * Where payments are stored, and the store's half of fencing: a write carries the fencing token
 * of the lock its writer held, and the store applies it only if it has not applied a write with
 * that token or a higher one for the same order, in one atomic step. A writer that paused past
 * its lock's expiry (a GC pause, a frozen VM) and wakes up after another instance took the lock
 * is refused here, whatever it believes. In SQL the same guard is one conditional update:
 *
 *   UPDATE payments SET amount = $2, fence = $3 WHERE order_id = $1 AND fence < $3
 *
 * (an insert of a new row: `INSERT ... ON CONFLICT (order_id) DO UPDATE ... WHERE payments.fence < $3`).
 */
export abstract class PaymentLedger {
  /** Records `payment` unless a write with an equal or higher fencing token came first. */
  abstract record(payment: Payment): Promise<FencedWrite>;
  /** The recorded payment of `orderId`, if any. */
  abstract find(orderId: string): Promise<Payment | undefined>;
}

/** The ledger in this process's memory (one instance only): what `npm start` runs with. */
export class MemoryPaymentLedger extends PaymentLedger {
  private readonly payments = new Map<string, Payment>();

  async record(payment: Payment): Promise<FencedWrite> {
    // Read and write in one synchronous step: nothing can interleave in between.
    const stored = this.payments.get(payment.orderId);
    if (stored && stored.fencingToken >= payment.fencingToken) return 'stale';
    this.payments.set(payment.orderId, payment);
    return 'written';
  }

  async find(orderId: string): Promise<Payment | undefined> {
    return this.payments.get(orderId);
  }
}
