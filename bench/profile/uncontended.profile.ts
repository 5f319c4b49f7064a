/**
 * Where an uncontended Redis lock cycle spends its time, ours against the raw floor
 * (`SET NX PX` + compare-and-delete script), in one process on a Redis of its own:
 * - client CPU: a V8 CPU profile of our loop, grouped by where the code lives;
 * - server CPU: Redis `INFO commandstats` microseconds per cycle, for each loop.
 *
 * Run: `npm run bench:profile` (builds first). Bounded: CYCLES cycles per loop, 3 rounds.
 */
import { Session } from 'node:inspector/promises';
import { Redis } from 'ioredis';
import { LockService, RedisLockBackend } from 'nestjs-distributed-lock';
import { createLockRuntime } from '../../lib/module/lock-runtime.factory';
import { startRedis } from '../../test/servers/redis.server';
import { removeDir } from '../../test/servers/server.process';

const CYCLES = 10_000;
const CAD =
  "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/**
 * Server µs of the commands a loop sends. Only those: a script's time already includes the
 * commands it calls, which commandstats also counts under their own names.
 */
async function serverMicros(admin: Redis, sent: readonly string[]): Promise<number> {
  const info = await admin.info('commandstats');
  let total = 0;
  for (const match of info.matchAll(/cmdstat_([a-z|]+):calls=\d+,usec=(\d+)/g)) {
    if (sent.includes(match[1])) total += Number(match[2]);
  }
  return total;
}

function group(url: string, name: string): string {
  if (url.includes('/dist/engine/') || url.includes('/lib/engine/')) return 'our engine';
  if (url.includes('/dist/backends/') || url.includes('/lib/backends/')) return 'our Redis backend';
  if (url.includes('ioredis')) return 'ioredis';
  if (url.startsWith('node:')) return 'node internals (streams, promises, timers)';
  if (name === 'writeUtf8String' || name === 'writev') return 'socket writes (syscalls)';
  if (name === '(idle)') return 'idle (waiting for Redis)';
  if (name === '(garbage collector)') return 'garbage collector';
  return 'other (V8, program)';
}

async function main(): Promise<void> {
  const server = await startRedis();
  const url = `redis://127.0.0.1:${server.port}`;
  const admin = new Redis(url);
  const raw = new Redis(url);
  const backend = new RedisLockBackend({ url });
  // The service without Nest around it: the same call path as an injected LockService.
  const locks = new LockService(createLockRuntime({ backend, ttl: 10_000, wait: 10_000 }));
  const session = new Session();
  session.connect();
  try {
    const cad = (await raw.script('LOAD', CAD)) as string;
    const floor = async (round: number): Promise<void> => {
      for (let i = 0; i < CYCLES; i++) {
        const key = `floor:${round}:${i}`;
        await raw.set(key, 'token', 'PX', 10_000, 'NX');
        await raw.evalsha(cad, 1, key, 'token');
      }
    };
    const ours = async (round: number): Promise<void> => {
      for (let i = 0; i < CYCLES; i++) {
        const lock = await locks.acquire(`ours:${round}:${i}`);
        await lock.release();
      }
    };
    await floor(-1); // warm-up, scripts loaded
    await ours(-1);
    const rows: string[] = [];
    for (let round = 0; round < 3; round++) {
      for (const [name, loop, sent] of [
        ['floor', floor, ['set', 'evalsha']],
        ['ours', ours, ['evalsha', 'eval']],
      ] as const) {
        await admin.config('RESETSTAT');
        const started = performance.now();
        await loop(round);
        const seconds = (performance.now() - started) / 1000;
        const micros = await serverMicros(admin, sent);
        rows.push(
          `| ${round} | ${name} | ${Math.round(CYCLES / seconds)} | ${(micros / CYCLES).toFixed(1)} |`,
        );
      }
    }
    console.log(
      '| round | loop | cycles/s | Redis server µs per cycle |\n| --- | --- | --- | --- |',
    );
    console.log(rows.join('\n'));

    await session.post('Profiler.enable');
    await session.post('Profiler.start');
    await ours(99);
    const { profile } = (await session.post('Profiler.stop')) as { profile: Profile };
    const byId = new Map(profile.nodes.map((node) => [node.id, node]));
    const totals = new Map<string, number>();
    let all = 0;
    profile.samples.forEach((id, i) => {
      const node = byId.get(id);
      if (!node) return;
      const key = group(node.callFrame.url, node.callFrame.functionName);
      totals.set(key, (totals.get(key) ?? 0) + profile.timeDeltas[i]);
      all += profile.timeDeltas[i];
    });
    console.log(`\nClient CPU profile of ${CYCLES} of our cycles (share of sampled time):\n`);
    console.log('| where | share |\n| --- | --- |');
    for (const [key, value] of [...totals].sort((a, b) => b[1] - a[1])) {
      console.log(`| ${key} | ${((value / all) * 100).toFixed(1)}% |`);
    }
  } finally {
    session.disconnect();
    await locks.beforeApplicationShutdown();
    await backend.close();
    raw.disconnect();
    admin.disconnect();
    await server.stop();
    removeDir(server.dir);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
