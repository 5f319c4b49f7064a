import type {
  BackendAcquireRequest,
  BackendAcquireResult,
  BackendExtendRequest,
  BackendLockInfo,
  BackendLockRef,
  LockBackend,
  Unsubscribe,
} from 'nestjs-distributed-lock/backend';
import { LockLostError, LockService } from 'nestjs-distributed-lock';
import { INestApplication } from '@nestjs/common';
import { sleep, within } from '../support/async.helpers';
import { createLockApp, uniqueKey } from '../support/test-app';
import { closeTestBackends, TEST_BACKENDS } from '../support/test-backends';

interface ReleaseCall {
  readonly token: string;
  readonly keys: readonly string[];
  settled: boolean;
}

/**
 * A real backend whose releases are recorded and answer a little late, the way a remote server
 * does, so that a release still in flight when shutdown ends can be seen.
 */
class ReleaseRecordingBackend implements LockBackend {
  readonly releases: ReleaseCall[] = [];
  // Optional members the engine may read (some are being added to LockBackend): forwarded when
  // the real backend has them, so that the wrapper changes nothing but the release timing.
  declare onLost?: LockBackend['onLost'];
  declare leaseDeadline?: () => number;
  declare maxKeys?: number;

  constructor(private readonly inner: LockBackend) {
    const optional = inner as LockBackend & { leaseDeadline?(): number; maxKeys?: number };
    if (optional.onLost) this.onLost = (listener) => optional.onLost!(listener);
    if (optional.leaseDeadline) this.leaseDeadline = () => optional.leaseDeadline!();
    if (optional.maxKeys !== undefined) this.maxKeys = optional.maxKeys;
  }

  get name(): string {
    return this.inner.name;
  }

  acquire(request: BackendAcquireRequest): Promise<BackendAcquireResult> {
    return this.inner.acquire(request);
  }

  extend(requests: readonly BackendExtendRequest[]): Promise<boolean[]> {
    return this.inner.extend(requests);
  }

  async release(ref: BackendLockRef): Promise<boolean> {
    const call: ReleaseCall = { token: ref.token, keys: [...ref.keys], settled: false };
    this.releases.push(call);
    try {
      const released = await this.inner.release(ref);
      await sleep(25);
      return released;
    } finally {
      call.settled = true;
    }
  }

  cancel(ref: BackendLockRef): Promise<void> {
    return this.inner.cancel(ref);
  }

  inspect(key: string): Promise<BackendLockInfo> {
    return this.inner.inspect(key);
  }

  onWake(token: string, listener: Parameters<LockBackend['onWake']>[1]): Unsubscribe {
    return this.inner.onWake(token, listener);
  }
}

/**
 * README "Shutdown": app.close() releases every held lock before the backend closes. Each grant
 * must get exactly one owner-checked release, settled by the time app.close() resolves (a
 * module-owned backend is closed right after that point).
 */
describe.each(TEST_BACKENDS)('Shutdown with held locks on $name', (testBackend) => {
  let observer: INestApplication;
  let other: LockService; // another instance on the same store, to see what is left held

  beforeAll(async () => {
    ({ app: observer, locks: other } = await createLockApp({ backend: testBackend.connect() }));
  });

  afterAll(async () => {
    await observer.close();
    await closeTestBackends();
  });

  it('releases each held grant exactly once, all settled before app.close() resolves', async () => {
    const backend = new ReleaseRecordingBackend(testBackend.connect());
    const { app, locks } = await createLockApp({ backend });
    const single = await locks.acquire(uniqueKey('shutdown-one'));
    const multi = await locks.acquire([uniqueKey('shutdown-a'), uniqueKey('shutdown-b')]);

    await within(10_000, app.close(), 'app.close()');
    const atClose = backend.releases.map((c) => ({ token: c.token, settled: c.settled }));

    // Anything fired after close would show up here.
    await sleep(200);
    const calls = backend.releases.map((c) => ({ token: c.token, settled: c.settled }));
    const summary = (list: { token: string; settled: boolean }[]): string[] =>
      list.map(
        (c) =>
          `${c.token === single.token ? 'single' : c.token === multi.token ? 'multi' : c.token}` +
          (c.settled ? '' : ' (in flight)'),
      );
    // One release per grant, none still in flight when app.close() resolved.
    expect({
      whenCloseResolved: summary(atClose).sort(),
      afterwards: summary(calls).sort(),
    }).toEqual({ whenCloseResolved: ['multi', 'single'], afterwards: ['multi', 'single'] });

    expect(single.signal.reason).toBeInstanceOf(LockLostError);
    expect(multi.signal.reason).toBeInstanceOf(LockLostError);
    for (const key of [single.key, ...multi.keys]) expect(await other.isLocked(key)).toBe(false);
  });
});
