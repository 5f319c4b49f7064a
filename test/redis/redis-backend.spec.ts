import type {
  BackendAcquireResult,
  BackendHandoff,
} from '../../lib/backends/lock-backend.interface';
import { eventually, sleep } from '../support/async.helpers';
import { newToken, uniqueId } from '../support/test-ids';
import { keySlot as clusterSlot } from '../../lib/backends/redis/redis.keys';
import { keysContaining, Resources } from './redis-test.helpers';

function fencing(result: BackendAcquireResult): readonly number[] {
  if (!result.acquired) throw new Error('expected the lock to be acquired');
  return result.fencingTokens;
}

describe('RedisLockBackend: grants, ownership, fencing', () => {
  const resources = new Resources();
  let id: string;
  const key = (name: string): string => `lock:${id}:${name}`;

  beforeEach(() => {
    id = uniqueId();
  });
  afterEach(() => resources.closeAll());

  it('re-acquiring with the token that holds the key is idempotent', async () => {
    const backend = resources.backend();
    const owner = newToken();
    const first = await backend.acquire({ keys: [key('a')], token: owner, ttl: 5000 });
    const second = await backend.acquire({ keys: [key('a')], token: owner, ttl: 5000 });
    expect(fencing(second)).toEqual(fencing(first));
  });

  it('extends a batch: held entries only, one boolean per request', async () => {
    const backend = resources.backend();
    const raw = resources.client();
    const held1 = { keys: [key('h1')], token: newToken() };
    const held2 = { keys: [key('h2'), key('h3')], token: newToken() };
    const released = { keys: [key('r')], token: newToken() };
    const stolen = { keys: [key('s')], token: newToken() };
    const thief = newToken('thief');
    const partial = { keys: [key('p1'), key('p2')], token: newToken() };

    for (const ref of [held1, held2, released, stolen, partial]) {
      expect((await backend.acquire({ ...ref, ttl: 1000 })).acquired).toBe(true);
    }
    await backend.release(released);
    // "stolen": our grant vanished (as after expiry) and another owner took the key.
    await raw.del(`{${key('s')}}`);
    expect((await backend.acquire({ keys: [key('s')], token: thief, ttl: 1000 })).acquired).toBe(
      true,
    );
    // "partial": one key of a multi-key grant was lost.
    await raw.del(`{${key('p2')}}`);

    const results = await backend.extend([
      { ...held1, ttl: 30_000 },
      { ...released, ttl: 30_000 },
      { ...held2, ttl: 30_000 },
      { ...stolen, ttl: 30_000 },
      { ...partial, ttl: 30_000 },
    ]);
    expect(results).toEqual([true, false, true, false, false]);

    expect(await raw.pttl(`{${key('h1')}}`)).toBeGreaterThan(10_000);
    expect(await raw.pttl(`{${key('h2')}}`)).toBeGreaterThan(10_000);
    expect(await raw.pttl(`{${key('h3')}}`)).toBeGreaterThan(10_000);
    // Not extended: the thief's lock keeps its own ttl, the partial grant is left alone.
    expect(await raw.pttl(`{${key('s')}}`)).toBeLessThanOrEqual(1000);
    expect(await raw.pttl(`{${key('p1')}}`)).toBeLessThanOrEqual(1000);
    expect(await backend.extend([])).toEqual([]);
  });

  it('splits a large renewal batch over several script calls', async () => {
    const backend = resources.backend({ maxBatchKeys: 100 });
    const refs = Array.from({ length: 250 }, (_, i) => ({
      keys: [key(`k${i}`)],
      token: newToken(),
    }));
    await Promise.all(refs.map((ref) => backend.acquire({ ...ref, ttl: 5000 })));
    const lost = refs[137];
    await backend.release(lost);
    const results = await backend.extend(refs.map((ref) => ({ ...ref, ttl: 10_000 })));
    expect(results).toHaveLength(250);
    expect(results.filter((r) => !r)).toHaveLength(1);
    expect(results[137]).toBe(false);
    await Promise.all(refs.map((ref) => backend.release(ref)));
  });

  it('leaves no Redis key behind once locks are released and queues are gone', async () => {
    const backend = resources.backend();
    const raw = resources.client();
    const refs = Array.from({ length: 20 }, (_, i) => ({
      keys: [key(`x${i}`), key(`y${i}`)],
      token: newToken(),
    }));
    for (const ref of refs) await backend.acquire({ ...ref, ttl: 5000 });
    expect((await keysContaining(raw, id)).length).toBe(40);

    // Waiters leave queue entries; cancel removes them, expiry removes the others.
    const canceller = { keys: [key('x0')], token: newToken('canceller') };
    const expirer = { keys: [key('x1')], token: newToken('expirer') };
    await backend.acquire({ ...canceller, ttl: 5000, queueFor: 10_000 });
    await backend.acquire({ ...expirer, ttl: 5000, queueFor: 200 });
    expect(await keysContaining(raw, id)).toEqual(
      expect.arrayContaining([`{${key('x0')}}:q`, `{${key('x0')}}:w`, `{${key('x1')}}:q`]),
    );
    await backend.cancel(canceller);
    await sleep(300);
    for (const ref of refs) expect(await backend.release(ref)).toBe(true);
    expect(await keysContaining(raw, id)).toEqual([]);
  });

  it('an uncontended grant writes owner and fencing only; a waiter flags the lock for its release', async () => {
    const backend = resources.backend();
    const raw = resources.client();
    const k = key('flag');
    const holder = newToken('holder');
    const waiter = newToken('waiter');
    expect((await backend.acquire({ keys: [k], token: holder, ttl: 5000 })).acquired).toBe(true);
    expect(Object.keys(await raw.hgetall(`{${k}}`)).sort()).toEqual(['f', 'o']);
    const stop = backend.onWake(waiter, () => undefined);
    await backend.acquire({ keys: [k], token: waiter, ttl: 5000, queueFor: 5000 });
    expect(await raw.hget(`{${k}}`, 'q')).toBe('1');
    // A flag left behind by a waiter that gave up only costs the release a look.
    await backend.cancel({ keys: [k], token: waiter });
    expect(await raw.hget(`{${k}}`, 'o')).toBe(holder);
    expect(await backend.release({ keys: [k], token: holder })).toBe(true);
    expect(await raw.exists(`{${k}}`, `{${k}}:q`, `{${k}}:w`)).toBe(0);
    stop();
  });

  it('extend counts a key handed to the token as held, and claims it', async () => {
    const backend = resources.backend({ claimWindow: 1000 });
    const raw = resources.client();
    const k = key('claim');
    const holder = newToken('holder');
    const waiter = newToken('waiter');
    await backend.acquire({ keys: [k], token: holder, ttl: 5000 });
    const offers: BackendHandoff[] = [];
    const stop = backend.onWake(waiter, (offer) => offer && offers.push(offer));
    await backend.acquire({ keys: [k], token: waiter, ttl: 5000, queueFor: 5000, attempt: 1 });
    await backend.release({ keys: [k], token: holder });
    expect(await raw.hget(`{${k}}`, 'c')).not.toBeNull();
    expect(await raw.pttl(`{${k}}`)).toBeLessThanOrEqual(1000);
    // The offer reserves the lock for the claim window, under the fencing token stored in `f`.
    await eventually(() => offers.length === 1, 5000, 'offers.length === 1');
    expect(offers[0]).toEqual({ attempt: 1, fencingTokens: [expect.any(Number)], ttl: 1000 });
    expect(Number(await raw.hget(`{${k}}`, 'f'))).toBe(offers[0].fencingTokens[0]);
    expect(await backend.extend([{ keys: [k], token: waiter, ttl: 20_000 }])).toEqual([true]);
    expect(await raw.hget(`{${k}}`, 'c')).toBeNull();
    expect(await raw.pttl(`{${k}}`)).toBeGreaterThan(10_000);
    expect(await backend.release({ keys: [k], token: waiter })).toBe(true);
    stop();
  });

  it('survives SCRIPT FLUSH between calls', async () => {
    const backend = resources.backend();
    const raw = resources.client();
    const token = newToken();
    expect((await backend.acquire({ keys: [key('a')], token, ttl: 5000 })).acquired).toBe(true);
    await raw.script('FLUSH');
    expect(await backend.extend([{ keys: [key('a')], token, ttl: 5000 }])).toEqual([true]);
    await raw.script('FLUSH');
    expect(await backend.release({ keys: [key('a')], token })).toBe(true);
    await raw.script('FLUSH');
    expect((await backend.inspect(key('a'))).held).toBe(false);
    await raw.script('FLUSH');
    await backend.cancel({ keys: [key('a')], token });
    await raw.script('FLUSH');
    expect((await backend.acquire({ keys: [key('a')], token, ttl: 5000 })).acquired).toBe(true);
  });

  it('keeps the Redis keys of one lock key in one hash slot', async () => {
    const backend = resources.backend();
    const raw = resources.client();
    await backend.acquire({ keys: [key('tag')], token: newToken(), ttl: 5000 });
    await backend.acquire({ keys: [key('tag')], token: newToken(), ttl: 5000, queueFor: 5000 });
    const keys = await keysContaining(raw, id);
    expect(keys.sort()).toEqual([`{${key('tag')}}`, `{${key('tag')}}:q`, `{${key('tag')}}:w`]);
    expect(new Set(keys.map(clusterSlot)).size).toBe(1);
    // Known answer: CRC16 of "123456789" is 0x31C3, the reference value of the Cluster spec.
    expect(clusterSlot('{123456789}:q')).toBe(0x31c3 % 16384);
    // Multi-key locks whose user keys share a {tag} land in one slot under a common prefix.
    expect(clusterSlot(`{lock:{order:1}:items}`)).toBe(clusterSlot(`{lock:{order:1}:payment}:q`));
  });
});
