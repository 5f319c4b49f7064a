import { waitForGrant } from '../support/backend.waiter';
import type {
  BackendAcquireResult,
  BackendHandoff,
} from '../../lib/backends/lock-backend.interface';
import type { RedisLockBackend } from '../../lib/backends/redis';
import { eventually, sleep, within } from '../support/async.helpers';
import { newToken, uniqueId } from '../support/test-ids';
import { Resources } from './redis-test.helpers';

function fencing(result: BackendAcquireResult): readonly number[] {
  if (!result.acquired) throw new Error('expected the lock to be acquired');
  return result.fencingTokens;
}

/** A promise that resolves on the next wake-up of `token`, and its unsubscribe function. */
function nextWake(
  backend: RedisLockBackend,
  token: string,
): { woken: Promise<void>; stop: () => void } {
  let stop: () => void = () => undefined;
  const woken = new Promise<void>((resolve) => {
    stop = backend.onWake(token, () => resolve());
  });
  return { woken, stop };
}

describe('RedisLockBackend: FIFO queue, handoff and wake-ups', () => {
  const resources = new Resources();
  let id: string;
  const key = (name: string): string => `lock:${id}:${name}`;

  beforeEach(() => {
    id = uniqueId();
  });
  afterEach(() => resources.closeAll());

  it('a reserved waiter that never claims delays the next one by claimWindow, and tells it so', async () => {
    const claimWindow = 300;
    const backend = resources.backend({ claimWindow });
    const k = key('dead');
    const holder = newToken('holder');
    const stuck = newToken('stuck'); // its instance listens, but it never claims (frozen)
    const live = newToken('live');
    await backend.acquire({ keys: [k], token: holder, ttl: 10_000 });
    await backend.acquire({ keys: [k], token: stuck, ttl: 10_000, queueFor: 30_000 });
    const hints: (number | undefined)[] = [];
    const stop = backend.onWake(live, (handoff, recheckAfter) => {
      expect(handoff).toBeUndefined();
      hints.push(recheckAfter);
    });
    const queued = await backend.acquire({ keys: [k], token: live, ttl: 10_000, queueFor: 30_000 });
    expect(queued.acquired).toBe(false);

    const releasedAt = Date.now();
    await backend.release({ keys: [k], token: holder });
    // The waiter behind the reservation hears when to re-check, without a round trip.
    await eventually(() => hints.length === 1, 5000, 'hints.length === 1');
    expect(hints).toEqual([claimWindow]);
    let granted: BackendAcquireResult | undefined;
    for (let i = 0; i < 100 && Date.now() - releasedAt < 10_000; i++) {
      const r = await backend.acquire({ keys: [k], token: live, ttl: 10_000, queueFor: 30_000 });
      if (r.acquired) {
        granted = r;
        break;
      }
      expect(r.retryAfter).toBeLessThanOrEqual(claimWindow);
      await sleep(r.retryAfter);
    }
    expect(granted?.acquired).toBe(true);
    expect(Date.now() - releasedAt).toBeLessThan(claimWindow + 3000);
    stop();
  });

  it('skips a queued waiter whose instance no longer listens, in the same release', async () => {
    const backend = resources.backend();
    const gone = resources.backend();
    const k = key('gone');
    const holder = newToken('holder');
    const dead = newToken('dead');
    const live = newToken('live');
    await backend.acquire({ keys: [k], token: holder, ttl: 10_000 });
    await gone.acquire({ keys: [k], token: dead, ttl: 10_000, queueFor: 30_000 });
    const wake = nextWake(backend, live);
    await backend.acquire({ keys: [k], token: live, ttl: 10_000, queueFor: 30_000, attempt: 1 });
    await gone.close(); // its pub/sub connection closes, as a killed process's does
    await backend.release({ keys: [k], token: holder });
    await within(5000, wake.woken, 'wake-up');
    // Handed straight to the live waiter: a newcomer finds it reserved, the live one claims it.
    expect((await backend.acquire({ keys: [k], token: newToken('new'), ttl: 1000 })).acquired).toBe(
      false,
    );
    expect((await backend.acquire({ keys: [k], token: live, ttl: 10_000 })).acquired).toBe(true);
    wake.stop();
  });

  it('an expired holder hands the key to the queue head on the next attempt, not to a newcomer', async () => {
    const backend = resources.backend();
    const k = key('expiry');
    const waiter = newToken('waiter');
    await backend.acquire({ keys: [k], token: newToken('holder'), ttl: 100 });
    const wake = nextWake(backend, waiter);
    await backend.acquire({ keys: [k], token: waiter, ttl: 5000, queueFor: 10_000 });
    await sleep(200);
    const newcomer = await backend.acquire({ keys: [k], token: newToken('newcomer'), ttl: 5000 });
    expect(newcomer.acquired).toBe(false);
    await within(5000, wake.woken, 'wake-up');
    expect((await backend.acquire({ keys: [k], token: waiter, ttl: 5000 })).acquired).toBe(true);
    wake.stop();
  });

  it('a multi-key waiter gets all its keys in FIFO order, keeping handed keys reserved', async () => {
    const backend = resources.backend({ claimWindow: 1000 });
    const [a, b] = [key('a'), key('b')];
    const holderA = newToken('holderA');
    const holderB = newToken('holderB');
    const multi = newToken('multi');
    await backend.acquire({ keys: [a], token: holderA, ttl: 10_000 });
    await backend.acquire({ keys: [b], token: holderB, ttl: 10_000 });

    let wakes = 0;
    const stop = backend.onWake(multi, () => wakes++);
    const first = await backend.acquire({
      keys: [a, b],
      token: multi,
      ttl: 10_000,
      queueFor: 10_000,
    });
    expect(first.acquired).toBe(false);

    await backend.release({ keys: [a], token: holderA });
    await eventually(() => wakes === 1, 5000, 'wakes === 1');
    const partial = await backend.acquire({
      keys: [a, b],
      token: multi,
      ttl: 10_000,
      queueFor: 10_000,
    });
    expect(partial.acquired).toBe(false);
    // It must come back before the reservation of `a` lapses.
    if (!partial.acquired) expect(partial.retryAfter).toBeLessThanOrEqual(500);
    // `a` stays reserved for the multi-key waiter while it waits for `b`.
    expect((await backend.acquire({ keys: [a], token: newToken(), ttl: 1000 })).acquired).toBe(
      false,
    );

    await backend.release({ keys: [b], token: holderB });
    await eventually(() => wakes === 2, 5000, 'wakes === 2');
    const granted = await backend.acquire({ keys: [a, b], token: multi, ttl: 10_000 });
    expect(fencing(granted)).toHaveLength(2);
    stop();
    expect(await backend.release({ keys: [a, b], token: multi })).toBe(true);
  });

  it('a queued multi-key waiter keeps its place on a key that is free', async () => {
    const backend = resources.backend();
    const [a, b] = [key('a'), key('b')];
    const multi = newToken('multi');
    const holderB = newToken('holderB');
    await backend.acquire({ keys: [b], token: holderB, ttl: 10_000 });
    const wake = nextWake(backend, multi);
    await backend.acquire({ keys: [a, b], token: multi, ttl: 10_000, queueFor: 10_000 });
    // `a` is free, but the older multi-key waiter is queued on it.
    expect((await backend.acquire({ keys: [a], token: newToken(), ttl: 1000 })).acquired).toBe(
      false,
    );
    await within(5000, wake.woken, 'wake-up');
    await backend.release({ keys: [b], token: holderB });
    expect((await backend.acquire({ keys: [a, b], token: multi, ttl: 10_000 })).acquired).toBe(
      true,
    );
    wake.stop();
  });

  it('two multi-key waiters holding keys handed to each other: the younger gives its key up', async () => {
    const claimWindow = 400;
    const backend = resources.backend({ claimWindow });
    const raw = resources.client();
    const [k1, k2] = [key('k1'), key('k2')];
    const both = [k1, k2];
    const [h1, h2, v, w] = ['h1', 'h2', 'v', 'w'].map((label) => newToken(label));
    const attempt = (token: string): Promise<BackendAcquireResult> =>
      backend.acquire({ keys: both, token, ttl: 10_000, queueFor: 30_000 });
    await backend.acquire({ keys: [k1], token: h1, ttl: 30_000 });
    await backend.acquire({ keys: [k2], token: h2, ttl: 30_000 });
    expect((await attempt(v)).acquired).toBe(false); // V queues first on both keys
    expect((await attempt(w)).acquired).toBe(false);

    await backend.release({ keys: [k1], token: h1 });
    expect(await raw.hget(`{${k1}}`, 'o')).toBe(v);
    await sleep(claimWindow + 150); // V misses its claim window...
    // ...and its late attempt hands k1 to the queue head W, re-queueing V in front on k1.
    expect((await attempt(v)).acquired).toBe(false);
    expect(await raw.hget(`{${k1}}`, 'o')).toBe(w);
    await backend.release({ keys: [k2], token: h2 });
    expect(await raw.hget(`{${k2}}`, 'o')).toBe(v);

    // V holds k2 and wants k1; W holds k1 and wants k2. W, the younger, gives k1 up to V instead
    // of renewing it (both used to keep their key until their waits ended).
    expect((await attempt(w)).acquired).toBe(false);
    expect(await raw.hget(`{${k1}}`, 'o')).toBe(v);
    expect((await attempt(v)).acquired).toBe(true);
    // V, the older, never gives a key up: W only gets its turn after V's release.
    expect((await attempt(w)).acquired).toBe(false);
    expect(await backend.release({ keys: both, token: v })).toBe(true);
    expect((await attempt(w)).acquired).toBe(true);
    expect(await backend.release({ keys: both, token: w })).toBe(true);
    expect(await raw.exists(`{${k1}}`, `{${k1}}:q`, `{${k2}}`, `{${k2}}:q`)).toBe(0);
  });

  it('overlapping multi-key waiters that miss claim windows all finish, none waiting out its wait', async () => {
    const claimWindow = 100;
    const backends = [resources.backend({ claimWindow }), resources.backend({ claimWindow })];
    const pool = Array.from({ length: 4 }, (_, i) => key(`p${i}`));
    // A fixed pseudo-random sequence, so a failure replays the same way.
    let seed = 7;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const wait = 20_000;
    const started = Date.now();
    const worker = async (index: number): Promise<number> => {
      const backend = backends[index % 2];
      let granted = 0;
      for (let round = 0; round < 4; round++) {
        const keys = pool.filter(() => random() < 0.6).sort();
        if (keys.length < 2) keys.splice(0, keys.length, pool[index % 4], pool[(index + 1) % 4]);
        keys.sort();
        const token = newToken(`w${index}`);
        // Half the waiters are sluggish: after a third of their parks they react too late for
        // their claim window. (A waiter that always does is indistinguishable from a dead one.)
        const sluggish = random() < 0.5;
        const lag = (): number => (sluggish && random() < 0.3 ? claimWindow * 1.5 : 0);
        await waitForGrant(backend, { keys, token }, { ttl: 5000, wait, lag });
        granted++;
        await sleep(2);
        expect(await backend.release({ keys, token })).toBe(true);
      }
      return granted;
    };
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => worker(i)));
    expect(results).toEqual(Array(6).fill(4));
    // Deadlocked pairs would only have been freed by their wait running out.
    expect(Date.now() - started).toBeLessThan(wait / 2);
  }, 30_000);

  it('wakes a multi-key waiter without an offer, and a waiter whose attempts are not numbered', async () => {
    const backend = resources.backend();
    const [a, b] = [key('a'), key('b')];
    const holder = newToken('holder');
    const multi = newToken('multi');
    const single = newToken('single');
    await backend.acquire({ keys: [a, b], token: holder, ttl: 10_000 });
    const seen: { token: string; handoff: BackendHandoff | undefined; recheck?: number }[] = [];
    const stops = [multi, single].map((token) =>
      backend.onWake(token, (handoff, recheck) => {
        seen.push({ token, handoff, ...(recheck === undefined ? {} : { recheck }) });
      }),
    );
    await backend.acquire({
      keys: [a, b],
      token: multi,
      ttl: 10_000,
      queueFor: 10_000,
      attempt: 1,
    });
    await backend.acquire({ keys: [b], token: single, ttl: 10_000, queueFor: 10_000 });
    await backend.release({ keys: [a, b], token: holder });
    await eventually(() => seen.length === 3, 5000, 'seen.length === 3');
    // `b` went to `multi` (first in line); `single`, next on `b`, hears when to re-check (that
    // hint goes out before the offer for `b`, both after the script's writes).
    expect(seen).toEqual([
      { token: multi, handoff: undefined },
      { token: single, handoff: undefined, recheck: 2000 },
      { token: multi, handoff: undefined },
    ]);
    // `single` is woken when `multi` releases.
    expect((await backend.acquire({ keys: [a, b], token: multi, ttl: 10_000 })).acquired).toBe(
      true,
    );
    await backend.release({ keys: [a, b], token: multi });
    await eventually(() => seen.length === 4, 5000, 'seen.length === 4');
    expect(seen[3]).toEqual({ token: single, handoff: undefined });
    for (const stop of stops) stop();
  });

  it('a busy attempt without queueFor leaves no trace', async () => {
    const backend = resources.backend();
    const raw = resources.client();
    const k = key('trace');
    await backend.acquire({ keys: [k], token: newToken(), ttl: 5000 });
    await backend.acquire({ keys: [k], token: newToken(), ttl: 5000 });
    await backend.acquire({ keys: [k], token: newToken(), ttl: 5000, queueFor: 0 });
    expect(await raw.exists(`{${k}}:q`, `{${k}}:w`)).toBe(0);
    // Attempts of one queued token refresh its entry: one queue member, however many attempts.
    const waiter = newToken('waiter');
    for (let attempt = 1; attempt <= 3; attempt++) {
      await backend.acquire({ keys: [k], token: waiter, ttl: 5000, queueFor: 5000, attempt });
    }
    expect(await raw.zrange(`{${k}}:q`, 0, -1)).toEqual([waiter]);
    await backend.cancel({ keys: [k], token: waiter });
  });

  it('wake-up listeners are dropped on unsubscribe (memory bounded by live waiters)', async () => {
    const backend = resources.backend();
    const stops = Array.from({ length: 100 }, () => backend.onWake(newToken(), () => undefined));
    const token = newToken();
    const s1 = backend.onWake(token, () => undefined);
    const s2 = backend.onWake(token, () => undefined);
    expect(backend.wakeListenerCount).toBe(101);
    for (const stop of stops) stop();
    s1();
    expect(backend.wakeListenerCount).toBe(1);
    s2();
    s2();
    expect(backend.wakeListenerCount).toBe(0);
  });
});
