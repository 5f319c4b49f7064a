import { OnApplicationShutdown } from '@nestjs/common';
import Redis from 'ioredis';
import { FencedWrite, Payment, PaymentLedger } from './payment.ledger';

/**
 * The fenced write, atomic on the server: applied only when the stored fence is lower than the
 * writer's token. KEYS: the order's hash. ARGV: token, the payment as JSON.
 */
const FENCED_WRITE = `
local stored = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
if tonumber(ARGV[1]) <= stored then return 0 end
redis.call('HSET', KEYS[1], 'fence', ARGV[1], 'payment', ARGV[2])
return 1
`;

/** Payments in Redis, shared by every instance of the app (with `LOCK_BACKEND=redis`). */
export class RedisPaymentLedger extends PaymentLedger implements OnApplicationShutdown {
  private readonly redis: Redis;

  constructor(
    url: string,
    private readonly prefix: string,
  ) {
    super();
    // Connects on first use: a start that fails elsewhere (Nest runs no shutdown hook then)
    // must not leave a reconnecting client keeping the process alive.
    this.redis = new Redis(url, { maxRetriesPerRequest: 2, lazyConnect: true });
    // Failures reach the caller of each command; the client's own error events only repeat them.
    this.redis.on('error', () => undefined);
  }

  async record(payment: Payment): Promise<FencedWrite> {
    const applied = await this.redis.eval(
      FENCED_WRITE,
      1,
      this.key(payment.orderId),
      payment.fencingToken,
      JSON.stringify(payment),
    );
    return applied === 1 ? 'written' : 'stale';
  }

  async find(orderId: string): Promise<Payment | undefined> {
    const raw = await this.redis.hget(this.key(orderId), 'payment');
    return raw ? (JSON.parse(raw) as Payment) : undefined;
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.redis.status === 'wait') this.redis.disconnect();
    else await this.redis.quit();
  }

  private key(orderId: string): string {
    return `${this.prefix}payments:${orderId}`;
  }
}
