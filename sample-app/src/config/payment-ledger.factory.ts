import { Logger } from '@nestjs/common';
import { MemoryPaymentLedger, PaymentLedger } from '../orders/payment.ledger';
import { RedisPaymentLedger } from '../orders/redis-payment.ledger';

/**
 * The payments store: with `LOCK_BACKEND=redis` a Redis shared by every instance (REDIS_URL,
 * under LOCK_PREFIX); else this process's memory, which is right for one instance only: two
 * instances on etcd would each keep their own payments, and could both pay an order (the sample
 * has no shared store beside etcd; a real app writes to its database, fenced the same way).
 */
export function paymentLedgerFromEnv(env: NodeJS.ProcessEnv = process.env): PaymentLedger {
  if (env.LOCK_BACKEND === 'redis') {
    return new RedisPaymentLedger(
      env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      env.LOCK_PREFIX ?? 'sample:',
    );
  }
  if (env.LOCK_BACKEND === 'etcd') {
    new Logger('Sample').warn(
      'payments are kept in this process: run one instance on etcd, or use LOCK_BACKEND=redis',
    );
  }
  return new MemoryPaymentLedger();
}
