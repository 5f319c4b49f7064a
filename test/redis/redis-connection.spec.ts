import Redis, { type RedisOptions } from 'ioredis';
import { LockBackendError } from '../../lib/errors/lock-backend.error';
import { RedisConnection } from '../../lib/backends/redis/redis.connection';
import { RedisScript } from '../../lib/backends/redis/redis.scripts';
import { freePort } from '../servers/server.process';
import { sleep, timed } from '../support/async.helpers';
import { redisUrl } from '../support/test-env';
import { uniqueId } from '../support/test-ids';
import { OwnRedisServers } from './redis-test.helpers';

/**
 * A script body that keeps the server busy for ARGV[1] ms (Redis runs one script at a time and
 * answers nobody meanwhile), capped in iterations so that it ends even on a clock it misreads.
 */
const BUSY_BODY = `
local t = redis.call('TIME')
local stop = t[1] * 1000000 + t[2] + tonumber(ARGV[1]) * 1000
for _ = 1, 5000000 do
  t = redis.call('TIME')
  if t[1] * 1000000 + t[2] >= stop then break end
end
return 1`;

/** A script this server has never seen: EVALSHA answers NOSCRIPT, and the connection falls back to EVAL. */
function unseenScript(body = 'return 7'): RedisScript {
  return new RedisScript('probe', `-- ${uniqueId()}\n${body}`);
}

function activeTimers(): number {
  return process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
}

/** Whether the server has `script` cached, which only an EVAL of it (or SCRIPT LOAD) does. */
async function cached(raw: Redis, script: RedisScript): Promise<boolean> {
  const [exists] = (await raw.script('EXISTS', script.sha)) as number[];
  return exists === 1;
}

describe('RedisConnection: one monotonic deadline per operation, on a real server', () => {
  const clients: Redis[] = [];
  const servers = new OwnRedisServers();

  function client(url: string, options: RedisOptions = {}): Redis {
    const c = new Redis(url, options);
    c.on('error', () => undefined);
    clients.push(c);
    return c;
  }

  afterEach(async () => {
    for (const c of clients.splice(0)) c.disconnect();
    await servers.stopAll();
  });

  it('bounds EVALSHA, the late NOSCRIPT and the EVAL fallback together by one commandTimeout', async () => {
    const budget = 1000;
    const server = await servers.start();
    const url = `redis://127.0.0.1:${server.port}`;
    const raw = client(url);
    const ours = client(url);
    await Promise.all([raw.ping(), ours.ping()]);
    const connection = new RedisConnection(ours, false, budget);
    // EVAL of this script keeps the server busy well past what is left of the budget.
    const script = unseenScript(BUSY_BODY);

    process.kill(server.pid, 'SIGSTOP');
    const outcome = timed(connection.script('acquire', script, 0, [budget]));
    // NOSCRIPT comes back only after 60% of the budget; the EVAL then gets the remaining 40%.
    await sleep(budget * 0.6);
    process.kill(server.pid, 'SIGCONT');
    const { ms, error } = await outcome;

    expect(error).toBeInstanceOf(LockBackendError);
    expect((error as Error).message).toMatch(`no reply within ${budget} ms`);
    expect(ms).toBeGreaterThanOrEqual(budget - 20);
    // A budget per command would end at 1.6 budgets at the earliest.
    expect(ms).toBeLessThan(budget * 1.5);
    // The fallback was sent (EVAL caches the script); the ping waits for the busy script to end.
    expect(await raw.ping()).toBe('PONG');
    expect(await cached(raw, script)).toBe(true);
  });

  it('does not send the EVAL fallback once the deadline has passed', async () => {
    const budget = 300;
    const server = await servers.start();
    const url = `redis://127.0.0.1:${server.port}`;
    const raw = client(url);
    const ours = client(url);
    await Promise.all([raw.ping(), ours.ping()]);
    const connection = new RedisConnection(ours, false, budget);
    const script = unseenScript();

    process.kill(server.pid, 'SIGSTOP');
    const { error } = await timed(connection.script('acquire', script, 0, []));
    expect(error).toBeInstanceOf(LockBackendError);
    // NOSCRIPT arrives now, after the deadline: nothing more may be sent for that operation.
    process.kill(server.pid, 'SIGCONT');
    await sleep(200);
    expect(await ours.ping()).toBe('PONG'); // after the NOSCRIPT reply, on the same connection
    expect(await cached(raw, script)).toBe(false);
  });

  it('answers with the EVAL reply after NOSCRIPT, and EVALSHA finds the script afterwards', async () => {
    const raw = client(redisUrl());
    const ours = client(redisUrl());
    const connection = new RedisConnection(ours, false, 5000);
    const script = unseenScript();
    expect(await cached(raw, script)).toBe(false);
    expect(await connection.script('probe', script, 0, [])).toBe(7);
    expect(await cached(raw, script)).toBe(true);
    expect(await connection.script('probe', script, 0, [])).toBe(7);
  });

  it('arms one watchdog timer for any number of operations in flight, none per call', async () => {
    const ours = client(redisUrl());
    await ours.ping();
    const before = activeTimers();
    const connection = new RedisConnection(ours, false, 1000);
    const script = unseenScript('return 1');
    await connection.script('warm', script, 0, []);
    const pending = Array.from({ length: 200 }, () => connection.script('x', script, 0, []));
    expect(activeTimers() - before).toBeLessThanOrEqual(1);
    expect(await Promise.all(pending)).toEqual(Array(200).fill(1));
    for (let i = 0; i < 200; i++) await connection.script('x', script, 0, []);
    expect(activeTimers() - before).toBeLessThanOrEqual(1);
    // With nothing in flight the watchdog lapses without re-arming. Read on the connection
    // itself: the process-wide timer count also sees other clients' reconnect timers.
    await sleep(1100);
    expect((connection as unknown as { watchdog?: NodeJS.Timeout }).watchdog).toBeUndefined();
  });

  it('waits for a client that is not connected: fails at the deadline without a ghost command, or sends once ready', async () => {
    const budget = 500;
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    // Like a user's client: ioredis's offline queue on, so a command sent while disconnected
    // would be queued and run after the reconnect, long after its caller was told it failed.
    const user = client(url, { retryStrategy: () => 20, maxRetriesPerRequest: null });
    // The connection listens for 'ready' and 'end' only while operations wait; ioredis itself
    // adds 'ready' listeners of its own while it connects, so 'end' is the one to count.
    const listeners = user.listenerCount('end');
    const ghost = `ghost:${uniqueId()}`;
    const live = `live:${uniqueId()}`;

    const failing = timed(
      new RedisConnection(user, false, budget).run('acquire', (c) => c.set(ghost, '1')),
    );
    await sleep(50);
    expect(user.listenerCount('end')).toBe(listeners + 1);
    const { ms, error } = await failing;
    expect(error).toBeInstanceOf(LockBackendError);
    expect((error as Error).message).toMatch(`not connected to Redis within ${budget} ms`);
    expect(ms).toBeLessThan(budget + 2000);
    expect(user.listenerCount('end')).toBe(listeners);

    // Now a server appears while an operation waits (a long budget: starting it takes a while).
    let settled = false;
    const waiting = new RedisConnection(user, false, 15_000)
      .run('acquire', (c) => c.set(live, '1'))
      .finally(() => (settled = true));
    await sleep(50);
    expect(settled).toBe(false);
    await servers.start({ port });
    expect(await waiting).toBe('OK');
    expect(user.listenerCount('end')).toBe(listeners);

    const raw = client(url);
    expect(await raw.get(live)).toBe('1');
    expect(await raw.exists(ghost)).toBe(0);
  });
});
