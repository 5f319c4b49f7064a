import type { Redis } from 'ioredis';
import { LockBackendError } from '../../lib/errors/lock-backend.error';
import { RedisConnection } from '../../lib/backends/redis/redis.connection';
import { RedisScript } from '../../lib/backends/redis/redis.scripts';
import { sleep, timed } from './redis-test.helpers';

const BUDGET = 400;
const SCRIPT = new RedisScript('probe', 'return 1');

/** The part of an ioredis client RedisConnection uses, answering as `reply` says. */
function fakeClient(reply: (command: string) => Promise<unknown>): {
  client: Redis;
  sent: string[];
} {
  const sent: string[] = [];
  const fake = {
    status: 'ready',
    on: () => fake,
    off: () => fake,
    call: (command: string) => {
      sent.push(command);
      return reply(command);
    },
  };
  return { client: fake as unknown as Redis, sent };
}

const noScript = (): Promise<never> =>
  Promise.reject(new Error('NOSCRIPT No matching script. Please use EVAL.'));
const never = (): Promise<never> => new Promise<never>(() => undefined);

function activeTimers(): number {
  return process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
}

describe('RedisConnection: one monotonic deadline per operation', () => {
  it('bounds EVALSHA, NOSCRIPT and the EVAL fallback together by one commandTimeout', async () => {
    const { client, sent } = fakeClient((command) =>
      command === 'evalsha' ? sleep(BUDGET * 0.6).then(noScript) : never(),
    );
    const connection = new RedisConnection(client, false, BUDGET);
    const { ms, error } = await timed(connection.script('acquire', SCRIPT, 0, []));
    expect(error).toBeInstanceOf(LockBackendError);
    expect((error as Error).message).toMatch(`no reply within ${BUDGET} ms`);
    expect(sent).toEqual(['evalsha', 'eval']);
    // One budget for both commands, not one each.
    expect(ms).toBeGreaterThanOrEqual(BUDGET - 20);
    expect(ms).toBeLessThan(BUDGET * 1.5);
  });

  it('does not send the EVAL fallback once the deadline has passed', async () => {
    const { client, sent } = fakeClient((command) =>
      command === 'evalsha' ? sleep(BUDGET + 100).then(noScript) : Promise.resolve(1),
    );
    const connection = new RedisConnection(client, false, BUDGET);
    const { error } = await timed(connection.script('acquire', SCRIPT, 0, []));
    expect(error).toBeInstanceOf(LockBackendError);
    await sleep(200);
    expect(sent).toEqual(['evalsha']);
  });

  it('answers with the EVAL reply after NOSCRIPT, and ignores a reply after the deadline', async () => {
    const fast = fakeClient((command) => (command === 'evalsha' ? noScript() : Promise.resolve(7)));
    expect(await new RedisConnection(fast.client, false, BUDGET).script('x', SCRIPT, 0, [])).toBe(
      7,
    );

    const late = fakeClient(() => sleep(BUDGET + 100).then(() => 'late'));
    const { error } = await timed(
      new RedisConnection(late.client, false, BUDGET).run('x', (c) => c.call('get')),
    );
    expect(error).toBeInstanceOf(LockBackendError);
  });

  it('arms one watchdog timer for any number of operations in flight, none per call', async () => {
    const { client } = fakeClient(() => new Promise((resolve) => setImmediate(() => resolve(1))));
    const connection = new RedisConnection(client, false, BUDGET);
    const before = activeTimers();
    const pending = Array.from({ length: 200 }, () => connection.script('x', SCRIPT, 0, []));
    expect(activeTimers() - before).toBeLessThanOrEqual(1);
    expect(await Promise.all(pending)).toEqual(Array(200).fill(1));
    for (let i = 0; i < 200; i++) await connection.script('x', SCRIPT, 0, []);
    expect(activeTimers() - before).toBeLessThanOrEqual(1);
    // With nothing in flight the watchdog lapses without re-arming.
    await sleep(BUDGET + 100);
    expect(activeTimers() - before).toBeLessThanOrEqual(0);
  });

  it('waits for a (re)connecting client within the same deadline, then sends', async () => {
    const listeners = new Map<string, () => void>();
    const sent: string[] = [];
    const fake = {
      status: 'connecting',
      on: (event: string, listener: () => void) => listeners.set(event, listener),
      off: (event: string) => listeners.delete(event),
      call: (command: string) => {
        sent.push(command);
        return Promise.resolve('OK');
      },
    };
    const connection = new RedisConnection(fake as unknown as Redis, false, BUDGET);
    const pending = connection.run('x', (c) => c.call('ping'));
    await sleep(50);
    expect(sent).toEqual([]);
    fake.status = 'ready';
    listeners.get('ready')?.();
    expect(await pending).toBe('OK');
    expect(listeners.size).toBe(0);

    // Never ready: fails at the deadline, sends nothing, leaves no listener behind.
    fake.status = 'reconnecting';
    const { ms, error } = await timed(connection.run('x', (c) => c.call('ping')));
    expect((error as Error).message).toMatch(`not connected to Redis within ${BUDGET} ms`);
    expect(ms).toBeLessThan(BUDGET * 1.5);
    expect(sent).toEqual(['ping']);
    expect(listeners.size).toBe(0);
  });
});
