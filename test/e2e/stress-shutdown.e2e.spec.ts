import { LockLostError, LockService } from 'nestjs-distributed-lock';
import { INestApplication } from '@nestjs/common';
import { sleep, within } from '../support/async.helpers';
import { ObservedBackend } from '../support/observed.backend';
import { createLockApp } from '../support/test-app';
import { sameSlotKeys, startTestBackend, TEST_BACKENDS } from '../support/test-backends';
import { uniqueKey } from '../support/test-ids';

/**
 * README "Shutdown": app.close() releases every held lock before the backend closes. Each grant
 * must get exactly one owner-checked release, settled by the time app.close() resolves (a
 * module-owned backend is closed right after that point).
 */
describe.each(TEST_BACKENDS)('Shutdown with held locks on $name', (testBackend) => {
  let stopBackend: (() => Promise<void>) | undefined;
  let observer: INestApplication;
  let other: LockService; // another instance on the same store, to see what is left held

  beforeAll(async () => {
    stopBackend = await startTestBackend(testBackend);
    ({ app: observer, locks: other } = await createLockApp({ backend: testBackend.connect() }));
  });

  afterAll(async () => {
    try {
      await observer.close();
    } finally {
      // Closes every client connected, then stops the entry's own servers.
      await stopBackend?.();
    }
  });

  it('releases each held grant exactly once, all settled before app.close() resolves', async () => {
    // Releases answer a little late, the way a remote server does, so that one still in flight
    // when app.close() resolves can be seen.
    const backend = new ObservedBackend(testBackend.connect(), { releaseDelay: 25 });
    // No grace: this is about the releases themselves (the grace has its own tests).
    const { app, locks } = await createLockApp({ backend, shutdownGrace: 0 });
    const single = await locks.acquire(uniqueKey('shutdown-one'));
    const multi = await locks.acquire(sameSlotKeys('shutdown', 'a', 'b'));

    await within(10_000, app.close(), 'app.close()');
    const atClose = backend.releases().map((c) => ({ token: c.ref.token, settled: c.settled }));

    // Anything fired after close would show up here.
    await sleep(200);
    const calls = backend.releases().map((c) => ({ token: c.ref.token, settled: c.settled }));
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
