import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Redis from 'ioredis';
import type { RedisLockBackend } from '../../lib/backends/redis';
import {
  FENCE_KEY_PREFIX,
  fenceKeyOfSlot,
  keySlot,
  lockHashKey,
} from '../../lib/backends/redis/redis.keys';
import { setClockOffset } from '../servers/redis.server';
import { removeDir, type ServerProcess } from '../servers/server.process';
import { deferred, eventually, within } from '../support/async.helpers';
import { waitForGrant } from '../support/backend.waiter';
import { newToken, uniqueId } from '../support/test-ids';
import { keysContaining, OwnRedisServers, Resources } from './redis-test.helpers';

const HOUR = 3_600_000;
/** Tokens {@link takeRound} sees: 1 + 2 grants, then holder and waiter of 1 and of 2 keys. */
const TOKENS_PER_ROUND = 9;

/** One fencing token a test saw, with where it came from for the failure message. */
interface Seen {
  readonly key: string;
  readonly phase: string;
  readonly how: string;
  readonly token: number;
}

/** The lock keys of one test: each kind of grant works on its own keys, every round. */
function roundKeys(id: string): {
  single: string;
  multi: string[];
  handoff: string;
  multiHandoff: string[];
} {
  return {
    single: `fence:${id}:single`,
    multi: [`fence:${id}:multi:1`, `fence:${id}:multi:2`],
    handoff: `fence:${id}:handoff`,
    multiHandoff: [`fence:${id}:mh:1`, `fence:${id}:mh:2`],
  };
}

/**
 * Grants of every kind on `backend`: uncontended single-key and multi-key grants, and handoffs of
 * a single key and of two keys from a holder to a queued waiter. Appends every token to `seen`,
 * per key in the order issued.
 */
async function takeRound(
  backend: RedisLockBackend,
  keys: ReturnType<typeof roundKeys>,
  phase: string,
  seen: Seen[],
): Promise<void> {
  const note = (lockKeys: readonly string[], tokens: readonly number[], how: string): void => {
    expect(tokens).toHaveLength(lockKeys.length);
    lockKeys.forEach((key, i) => seen.push({ key, phase, how, token: tokens[i] }));
  };
  for (const lockKeys of [[keys.single], keys.multi]) {
    const ref = { keys: lockKeys, token: newToken('grant') };
    const result = await backend.acquire({ ...ref, ttl: 10_000 });
    if (!result.acquired) throw new Error(`${lockKeys.join(', ')} busy on a fresh server`);
    note(lockKeys, result.fencingTokens, 'grant');
    expect(await backend.release(ref)).toBe(true);
  }
  for (const lockKeys of [[keys.handoff], keys.multiHandoff]) {
    const holder = { keys: lockKeys, token: newToken('holder') };
    const held = await backend.acquire({ ...holder, ttl: 10_000 });
    if (!held.acquired) throw new Error(`${lockKeys.join(', ')} busy on a fresh server`);
    note(lockKeys, held.fencingTokens, 'holder');
    const waiter = { keys: lockKeys, token: newToken('waiter') };
    const queued = deferred();
    const waited = waitForGrant(backend, waiter, {
      ttl: 10_000,
      wait: 15_000,
      onQueued: () => queued.resolve(),
    });
    await within(10_000, queued.promise, 'waiter queued');
    expect(await backend.release(holder)).toBe(true);
    const got = await within(15_000, waited, 'handoff to the waiter');
    // Handed over by the release (a wake-up), not taken after the holder's ttl.
    expect(got.wakes).toBeGreaterThan(0);
    note(lockKeys, got.fencingTokens, 'handoff');
    expect(await backend.release(waiter)).toBe(true);
  }
}

/** Every token of a key that is not strictly greater than every earlier token of that key. */
function backwards(seen: readonly Seen[]): string[] {
  const highest = new Map<string, Seen>();
  const found: string[] = [];
  for (const entry of seen) {
    const before = highest.get(entry.key);
    if (before && entry.token <= before.token) {
      found.push(
        `${entry.key}: ${entry.phase} ${entry.how} ${entry.token} <= ${before.phase} ${before.how} ${before.token}`,
      );
    }
    if (!before || entry.token > before.token) highest.set(entry.key, entry);
  }
  return found;
}

async function serverTimeMs(client: Redis): Promise<number> {
  const [seconds, micros] = await client.time();
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
}

function url(server: ServerProcess): string {
  return `redis://127.0.0.1:${server.port}`;
}

describe('Redis fencing tokens never go backwards', () => {
  const servers = new OwnRedisServers();
  const resources = new Resources();
  let clockDir: string;
  let clockFile: string;

  beforeEach(() => {
    clockDir = mkdtempSync(join(tmpdir(), 'ndl-clock-'));
    clockFile = join(clockDir, 'offset');
  });

  afterEach(async () => {
    await resources.closeAll();
    await servers.stopAll();
    removeDir(clockDir);
  });

  it('keeps increasing when the server clock is stepped back an hour', async () => {
    const server = await servers.start({ clockOffsetFile: clockFile });
    const raw = resources.client(url(server));
    const backend = resources.backend({ url: url(server), claimWindow: 1000 });
    const keys = roundKeys(uniqueId());
    const seen: Seen[] = [];

    await takeRound(backend, keys, 'before', seen);
    setClockOffset(clockFile, -HOUR);
    await eventually(
      async () => (await serverTimeMs(raw)) < Date.now() - HOUR / 2,
      5_000,
      'server clock stepped back',
    );
    await takeRound(backend, keys, 'after', seen);

    expect(seen.filter((s) => s.phase === 'after')).toHaveLength(TOKENS_PER_ROUND);
    expect(backwards(seen)).toEqual([]);
  });

  it('stays above a clock-based token issued in between (an earlier version, after an upgrade and a rollback)', async () => {
    const server = await servers.start();
    const raw = resources.client(url(server));
    const backend = resources.backend({ url: url(server), claimWindow: 1000 });
    const key = `lock:${uniqueId()}`;
    const first = await backend.acquire({ keys: [key], token: newToken(), ttl: 5_000 });
    expect(first.acquired).toBe(true);
    if (!first.acquired) return;
    await backend.release({ keys: [key], token: (await raw.hget(lockHashKey(key), 'o')) ?? '' });
    // What the clock-based scheme of 0.1.0 would issue now, had it run in between: the server's
    // time in µs. A counter alone (seeded from the clock once, then + 1) would stay below it.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const [seconds, micros] = await raw.time();
    const clockToken = Number(seconds) * 1_000_000 + Number(micros);
    const next = await backend.acquire({ keys: [key], token: newToken(), ttl: 5_000 });
    expect(next.acquired).toBe(true);
    if (!next.acquired) return;
    expect(next.fencingTokens[0]).toBeGreaterThan(clockToken);
    expect(next.fencingTokens[0]).toBeGreaterThan(first.fencingTokens[0]);
  });

  it('keeps increasing on a promoted replica whose clock lags an hour', async () => {
    setClockOffset(clockFile, -HOUR);
    // No 5 s wait for more replicas before the full sync.
    const primary = await servers.start({ extraArgs: ['--repl-diskless-sync-delay', '0'] });
    const replica = await servers.start({ clockOffsetFile: clockFile });
    const primaryClient = resources.client(url(primary));
    const replicaClient = resources.client(url(replica));
    expect(await serverTimeMs(replicaClient)).toBeLessThan(Date.now() - HOUR / 2);
    await replicaClient.call('REPLICAOF', '127.0.0.1', String(primary.port));
    await eventually(
      async () => (await replicaClient.info('replication')).includes('master_link_status:up'),
      15_000,
      'replica in sync',
    );
    const keys = roundKeys(uniqueId());
    const seen: Seen[] = [];

    await takeRound(
      resources.backend({ url: url(primary), claimWindow: 1000 }),
      keys,
      'before',
      seen,
    );
    // The replica has every grant of the primary, then takes over (the old primary stays up,
    // unused, as after a failover that isolated it).
    // WAIT covers the writes of its own connection: one write here, after the backend's in the
    // replication stream, makes it cover those too.
    await primaryClient.set(`${keys.single}:synced`, '1');
    expect(await primaryClient.call('WAIT', '1', '5000')).toBe(1);
    await replicaClient.call('REPLICAOF', 'NO', 'ONE');
    await takeRound(
      resources.backend({ url: url(replica), claimWindow: 1000 }),
      keys,
      'after',
      seen,
    );

    expect(seen.filter((s) => s.phase === 'after')).toHaveLength(TOKENS_PER_ROUND);
    expect(backwards(seen)).toEqual([]);
  });

  it('keeps one counter per slot used, in the slot of the lock keys it serves (a Cluster node)', async () => {
    // A one-node Redis Cluster serving every slot: Redis itself refuses a script whose keys
    // are not all in one slot, and CLUSTER KEYSLOT is the reference for our CRC16.
    const node = await servers.start({
      extraArgs: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf'],
    });
    const raw = resources.client(url(node));
    await raw.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
    await eventually(
      async () => String(await raw.call('CLUSTER', 'INFO')).includes('cluster_state:ok'),
      10_000,
      'cluster state ok',
    );
    const serverSlots = async (keys: readonly string[]): Promise<number[]> => {
      const pipeline = raw.pipeline();
      for (const key of keys) pipeline.call('CLUSTER', 'KEYSLOT', key);
      const replies = (await pipeline.exec()) ?? [];
      return replies.map(([error, slot]) => {
        if (error) throw error;
        return Number(slot);
      });
    };

    // The Redis Cluster spec's test vector, and keys with hash tags and multi-byte characters.
    expect(keySlot('123456789')).toBe(12739);
    const tricky = ['123456789', '{user1000}.following', 'foo{}{bar}', 'foo{{bar}}zap', '{}x'];
    tricky.push('a{bar', 'x{日本}y', 'ключ', '\u{1F600}{\u{1F600}}', 'lone\ud800', 'é{é}');
    expect(await serverSlots(tricky)).toEqual(tricky.map(keySlot));
    // Every slot's counter is in that slot.
    const slots = Array.from({ length: 16384 }, (_, slot) => slot);
    expect(await serverSlots(slots.map(fenceKeyOfSlot))).toEqual(slots);

    const backend = resources.backend({ url: url(node), claimWindow: 1000 });
    const id = uniqueId();
    // Distinct lock keys, many sharing a slot through a hash tag, so counters < lock keys.
    const lockKeys = [
      ...Array.from({ length: 1200 }, (_, i) => `fence:${id}:${i}`),
      ...Array.from({ length: 300 }, (_, i) => `{fence:${id}:tagged}:${i}`),
    ];
    for (let i = 0; i < lockKeys.length; i += 100) {
      await Promise.all(
        lockKeys.slice(i, i + 100).map(async (key) => {
          const ref = { keys: [key], token: newToken() };
          expect((await backend.acquire({ ...ref, ttl: 10_000 })).acquired).toBe(true);
          expect(await backend.release(ref)).toBe(true);
        }),
      );
    }
    // Multi-key in one slot, and a handoff (the release and cancel scripts), on the Cluster node.
    const seen: Seen[] = [];
    const tagged = `{fence:${id}:tagged}`;
    await takeRound(
      backend,
      {
        single: `${tagged}:single`,
        multi: [`${tagged}:m1`, `${tagged}:m2`],
        handoff: `${tagged}:h`,
        multiHandoff: [`${tagged}:mh1`, `${tagged}:mh2`],
      },
      'cluster',
      seen,
    );
    expect(backwards(seen)).toEqual([]);
    const waiter = { keys: [`${tagged}:0`], token: newToken('waiter') };
    const holder = { keys: waiter.keys, token: newToken('holder') };
    expect((await backend.acquire({ ...holder, ttl: 10_000 })).acquired).toBe(true);
    const stop = backend.onWake(waiter.token, () => undefined);
    await backend.acquire({ ...waiter, ttl: 10_000, queueFor: 10_000, attempt: 1 });
    await backend.cancel(waiter);
    stop();
    expect(await backend.release(holder)).toBe(true);

    const lockSlots = new Set(await serverSlots(lockKeys.map(lockHashKey)));
    const counters = await keysContaining(raw, FENCE_KEY_PREFIX);
    expect(counters.length).toBe(lockSlots.size);
    expect(counters.length).toBeLessThan(1200 + 2);
    expect(new Set(await serverSlots(counters))).toEqual(lockSlots);
    // Nothing else stays: no key per lock key once the locks are free.
    expect(await raw.dbsize()).toBe(counters.length);
  });
});
