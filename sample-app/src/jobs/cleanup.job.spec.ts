import { Test, TestingModule } from '@nestjs/testing';
import { DistributedLockTestingModule, LockTesting } from 'nestjs-distributed-lock/testing';
import { CleanupJob } from './cleanup.job';

describe('CleanupJob', () => {
  let moduleRef: TestingModule;

  beforeEach(async () => {
    moduleRef = await Test.createTestingModule({
      imports: [DistributedLockTestingModule.forRoot()],
      providers: [CleanupJob],
    }).compile();
  });

  afterEach(() => moduleRef.close());

  it('runs when no other instance runs it, and skips when one does', async () => {
    const job = moduleRef.get(CleanupJob);
    const testing = moduleRef.get(LockTesting);
    await job.run();
    expect(job.runs).toBe(1);
    const other = await testing.hold('job:cleanup');
    await expect(job.run()).resolves.toBeUndefined();
    expect(job.runs).toBe(1);
    await other.release();
    await job.run();
    expect(job.runs).toBe(2);
  });
});
