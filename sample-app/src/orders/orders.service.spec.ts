import { ConflictException } from '@nestjs/common';
import { Test, TestingModule } from '@nestjs/testing';
import { LockNotAcquiredError } from 'nestjs-distributed-lock';
import { DistributedLockTestingModule, LockTesting } from 'nestjs-distributed-lock/testing';
import { OrdersService } from './orders.service';
import { MemoryPaymentLedger, PaymentLedger } from './payment.ledger';

// A unit test of a provider with @Locked methods: one import of the testing kit is all it needs.
describe('OrdersService', () => {
  let moduleRef: TestingModule;
  let orders: OrdersService;
  let testing: LockTesting;

  beforeEach(async () => {
    moduleRef = await Test.createTestingModule({
      imports: [DistributedLockTestingModule.forRoot({ wait: 0 })],
      providers: [OrdersService, { provide: PaymentLedger, useClass: MemoryPaymentLedger }],
    }).compile();
    orders = moduleRef.get(OrdersService);
    testing = moduleRef.get(LockTesting);
  });

  afterEach(() => moduleRef.close());

  it('pays an order under the lock of that order, and records the fencing token', async () => {
    const payment = await orders.pay('7', 5);
    expect(testing.wasLocked('order:7')).toBe(true);
    const [grant] = testing.grants();
    expect(grant).toEqual(expect.objectContaining({ keys: ['order:7'], released: true }));
    expect(payment.fencingToken).toBe(grant.fencingTokens[0]);
  });

  it('does not pay while another instance holds the order', async () => {
    const other = await testing.hold('order:8');
    await expect(orders.pay('8', 5)).rejects.toBeInstanceOf(LockNotAcquiredError);
    await expect(orders.find('8')).rejects.toThrow('order 8 is not paid');
    await other.release();
    await orders.pay('8', 5);
    await expect(orders.pay('8', 5)).rejects.toBeInstanceOf(ConflictException);
  });

  it('has the ledger refuse a write whose fencing token is not above the stored one', async () => {
    const ledger = moduleRef.get(PaymentLedger);
    const payment = { orderId: '9', amount: 5, paidAt: new Date().toISOString() };
    await expect(ledger.record({ ...payment, fencingToken: 7 })).resolves.toBe('written');
    // A writer that held an older grant of the lock (a lower token) is refused, as is a replay.
    await expect(ledger.record({ ...payment, fencingToken: 6 })).resolves.toBe('stale');
    await expect(ledger.record({ ...payment, fencingToken: 7 })).resolves.toBe('stale');
    await expect(ledger.find('9')).resolves.toMatchObject({ fencingToken: 7 });
  });
});
