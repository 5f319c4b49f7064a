import { createHash, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { ACQUIRE_WAIT_MS, BusyError, BenchEnv, LockAdapter } from '../peers/lock-adapter.interface';
import { nowMs, sleep } from '../support/time.util';
import { KeyedWakeups } from '../support/keyed.wakeups';

/** Compare-and-delete: deletes the key only if it still holds our token. */
const RELEASE_LUA = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0`;

/** Compare-and-delete, then publish on the key's channel so that subscribed waiters retry. */
const RELEASE_PUBLISH_LUA = `if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[1])
  redis.call('publish', ARGV[2], '1')
  return 1
end
return 0`;

/** A lock held by a raw floor: the key and our random token. */
export interface RawHandle {
  readonly key: string;
  readonly token: string;
}

/** Longest a push waiter parks without a message before it re-checks (lost-message cover). */
const PUSH_FALLBACK_MS = 50;

/** Runs a Lua script by SHA, loading it on NOSCRIPT (as a real client would). */
async function runScript(
  client: Redis,
  lua: string,
  sha: string,
  keys: readonly string[],
  args: readonly string[],
): Promise<unknown> {
  try {
    return await client.evalsha(sha, keys.length, ...keys, ...args);
  } catch (err) {
    if (!String(err).includes('NOSCRIPT')) throw err;
    return client.eval(lua, keys.length, ...keys, ...args);
  }
}

function sha1(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}

/**
 * The Redis floors, no lock library: `SET key token NX PX ttl` to acquire, a compare-and-delete
 * script to release. `polling` retries every 5 ms; `push` also subscribes (before retrying) to a
 * per-key channel that the release script publishes on, and retries when the message arrives.
 */
export class RedisFloor implements LockAdapter<RawHandle> {
  readonly backend = 'redis' as const;
  readonly kind = 'floor' as const;
  readonly id: string;
  readonly settings: string;
  private subscriber: Redis | undefined;
  private readonly subscribed = new Map<string, Promise<unknown>>();
  private readonly wakeups = new KeyedWakeups(PUSH_FALLBACK_MS);
  private readonly releaseLua: string;
  private readonly releaseSha: string;

  private constructor(
    private readonly client: Redis,
    readonly mode: 'polling' | 'push',
    private readonly retryMs: number,
  ) {
    this.id = mode === 'polling' ? 'floor/redis-poll' : 'floor/redis-push';
    this.settings =
      mode === 'polling'
        ? `SET NX PX + compare-and-delete script, retry every ${retryMs} ms`
        : `SET NX PX + compare-and-delete-and-PUBLISH script, waiter subscribed, fallback re-check ${PUSH_FALLBACK_MS} ms`;
    this.releaseLua = mode === 'polling' ? RELEASE_LUA : RELEASE_PUBLISH_LUA;
    this.releaseSha = sha1(this.releaseLua);
  }

  static async create(env: BenchEnv, mode: 'polling' | 'push'): Promise<RedisFloor> {
    const client = new Redis(env.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
    await client.connect();
    await client.script('LOAD', mode === 'polling' ? RELEASE_LUA : RELEASE_PUBLISH_LUA);
    return new RedisFloor(client, mode, 5);
  }

  async acquire(key: string, ttl: number): Promise<RawHandle> {
    const token = randomBytes(16).toString('hex');
    const tryOnce = async (): Promise<boolean> =>
      (await this.client.set(key, token, 'PX', ttl, 'NX')) === 'OK';
    if (await tryOnce()) return { key, token };
    const deadline = nowMs() + ACQUIRE_WAIT_MS;
    if (this.mode === 'push') await this.subscribe(key);
    // Bounded by the deadline and by a count (each round parks >= 1 ms or waits for a message).
    for (let round = 0; round < 1_000_000 && nowMs() < deadline; round++) {
      if (this.mode === 'polling') {
        await sleep(this.retryMs);
        if (await tryOnce()) return { key, token };
        continue;
      }
      // Listen before the attempt: a release between the attempt and the park must wake us.
      const { woken, cancel } = this.wakeups.listen(channelOf(key));
      if (await tryOnce()) {
        cancel();
        return { key, token };
      }
      await woken;
    }
    throw new BusyError(this.id, key);
  }

  async release(handle: RawHandle): Promise<void> {
    const args = this.mode === 'push' ? [handle.token, channelOf(handle.key)] : [handle.token];
    await runScript(this.client, this.releaseLua, this.releaseSha, [handle.key], args);
  }

  async close(): Promise<void> {
    this.subscriber?.disconnect();
    this.client.disconnect();
  }

  private subscribe(key: string): Promise<unknown> {
    let subscriber = this.subscriber;
    if (!subscriber) {
      subscriber = this.client.duplicate();
      subscriber.on('message', (channel: string) => {
        this.wakeups.wake(channel);
      });
      this.subscriber = subscriber;
    }
    const channel = channelOf(key);
    let done = this.subscribed.get(channel);
    if (!done) {
      done = subscriber.subscribe(channel);
      this.subscribed.set(channel, done);
    }
    return done;
  }
}

function channelOf(key: string): string {
  return `bench:floor:released:${key}`;
}
