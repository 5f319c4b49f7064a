import { LockBackendError, LockService } from 'nestjs-distributed-lock';
import type { LockBackend } from 'nestjs-distributed-lock';
import { MemoryLockBackend } from 'nestjs-distributed-lock';
import { createLockApp } from '../support/test-app';
import { etcdHosts, redisUrl } from '../support/test-env';

/** The error `createLockApp` (Nest's `app.init()`) failed with. */
async function startError(options: Parameters<typeof createLockApp>[0]): Promise<LockBackendError> {
  const failure = await createLockApp(options).then(
    async ({ app }) => {
      await app.close();
      return undefined;
    },
    (err: unknown) => err,
  );
  expect(failure).toBeInstanceOf(LockBackendError);
  return failure as LockBackendError;
}

describe('the startup check of the backend', () => {
  it('fails the start on a refused Redis, naming the backend, the host and the cause', async () => {
    const err = await startError({
      backend: { type: 'redis', url: 'redis://127.0.0.1:1', commandTimeout: 1_000 },
    });
    expect(err.message).toMatch(/^redis backend at 127\.0\.0\.1:1 failed to /);
    expect(err.message).toMatch(/ECONNREFUSED/);
    expect(err.message).toMatch(/checkBackend: false/);
  });

  it('fails the start on a refused etcd, naming the host and the underlying cause', async () => {
    const err = await startError({
      backend: { type: 'etcd', hosts: 'http://127.0.0.1:1', commandTimeout: 1_000 },
    });
    expect(err.message).toMatch(/^etcd backend at http:\/\/127\.0\.0\.1:1 failed to /);
    // The client's own state (a circuit breaker) may be mentioned, but never alone.
    expect(err.message).toMatch(/ECONNREFUSED/);
  });

  it('starts without the check when checkBackend is false', async () => {
    const { app, locks } = await createLockApp({
      backend: { type: 'redis', url: 'redis://127.0.0.1:1', commandTimeout: 500 },
      checkBackend: false,
    });
    try {
      await expect(locks.tryAcquire('k')).rejects.toThrow(/redis backend at 127\.0\.0\.1:1/);
    } finally {
      await app.close();
    }
  });

  it('passes on reachable servers', async () => {
    for (const backend of [
      { type: 'redis' as const, url: redisUrl() },
      { type: 'etcd' as const, hosts: etcdHosts() },
    ]) {
      const { app, locks } = await createLockApp({ backend });
      await app.close();
      expect(locks).toBeInstanceOf(LockService);
    }
  });

  it("checks a backend of the user's own with a read when it has no ping", async () => {
    const broken: LockBackend = Object.assign(new MemoryLockBackend(), {
      name: 'custom',
      endpoint: 'custom-store:1',
      ping: undefined,
      inspect: () => Promise.reject(new Error('store is down')),
    });
    const err = await startError({ backend: broken });
    expect(err.message).toMatch(/^custom backend at custom-store:1 failed to .*store is down/);
    expect(err.cause).toEqual(new Error('store is down'));
  });
});
