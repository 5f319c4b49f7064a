import { MemoryPaymentLedger, PaymentLedger } from '../orders/payment.ledger';
import { RedisPaymentLedger } from '../orders/redis-payment.ledger';

/**
 * The payments store for the lock backend in use: with `LOCK_BACKEND=redis` a Redis shared by
 * every instance (the same REDIS_URL, under LOCK_PREFIX), else this process's memory.
 */
export function paymentLedgerFromEnv(env: NodeJS.ProcessEnv = process.env): PaymentLedger {
  if (env.LOCK_BACKEND === 'redis') {
    return new RedisPaymentLedger(
      env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      env.LOCK_PREFIX ?? 'sample:',
    );
  }
  return new MemoryPaymentLedger();
}
