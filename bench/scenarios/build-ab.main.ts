/**
 * A/B of two builds of the library, for a change to a hot path, finer than a full bench run can
 * resolve on a noisy machine:
 *
 *   npm run build && npx tsc -p bench/tsconfig.json && \
 *     BENCH_BASE_DIR=<a dist/ built before the change> node dist-bench/bench/scenarios/build-ab.main.js
 *
 * In one process, on a redis-server of its own (127.0.0.1, free port) and on the memory backend:
 * `LockService.acquire` + `release` of fresh keys, with one caller and with 64 parallel callers,
 * `base` (BENCH_BASE_DIR) and `this` (dist/) in alternating order, ROUNDS rounds of at most
 * CYCLES cycles or ROUND_MS each. Prints, per case, the median cycles/s and client CPU µs per cycle
 * (`process.cpuUsage`) of each build, and the median of the per-round ratios this / base.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { startRedis } from '../../test/servers/redis.server';
import { median } from '../stats';

const ROUNDS = Number(process.env.ROUNDS ?? 8);
const CYCLES = Number(process.env.CYCLES ?? 20_000);
const ROUND_MS = 5_000;

type Library = typeof import('nestjs-distributed-lock');
type RuntimeFactory = typeof import('../../lib/module/lock-runtime.factory');
type Locks = InstanceType<Library['LockService']>;

const load = createRequire(__filename);

interface Build {
  readonly name: string;
  readonly locks: Locks;
  readonly close: () => Promise<void>;
}

function build(name: string, dir: string, redisUrl: string | undefined): Build {
  const lib = load(dir) as Library;
  const { createLockRuntime } = load(join(dir, 'module', 'lock-runtime.factory')) as RuntimeFactory;
  const backend = redisUrl
    ? new lib.RedisLockBackend({ url: redisUrl })
    : new lib.MemoryLockBackend();
  const locks = new lib.LockService(createLockRuntime({ backend, ttl: 10_000, wait: 10_000 }));
  return { name, locks, close: () => backend.close() };
}

/** Cycles/s and client CPU µs per cycle of `callers` loops sharing at most CYCLES cycles. */
async function round(b: Build, callers: number, tag: string): Promise<[number, number]> {
  let next = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  const deadline = started + ROUND_MS;
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (next < CYCLES && performance.now() < deadline) {
        const lock = await b.locks.acquire(`${tag}:${next++}`);
        await lock.release();
      }
    }),
  );
  const used = process.cpuUsage(cpu);
  return [(next / (performance.now() - started)) * 1000, (used.user + used.system) / next];
}

async function compare(backend: string, builds: readonly [Build, Build]): Promise<void> {
  for (const [shape, callers] of [
    ['sequential', 1],
    ['parallel-64', 64],
  ] as const) {
    const rates: [number, number][][] = [[], []];
    for (const [i, b] of builds.entries()) await round(b, callers, `${shape}:warm:${i}`);
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? [0, 1] : [1, 0];
      for (const i of order) rates[i].push(await round(builds[i], callers, `${shape}:${i}:${r}`));
    }
    const [base, mine] = rates;
    console.log(
      JSON.stringify({
        backend,
        shape,
        base: {
          cyclesPerSec: Math.round(median(base.map((x) => x[0]))),
          cpuUs: median(base.map((x) => x[1])),
        },
        this: {
          cyclesPerSec: Math.round(median(mine.map((x) => x[0]))),
          cpuUs: median(mine.map((x) => x[1])),
        },
        medianRoundRatio: Number(median(mine.map((x, i) => x[0] / base[i][0])).toFixed(3)),
      }),
    );
  }
}

async function main(): Promise<void> {
  const baseDir = process.env.BENCH_BASE_DIR;
  if (!baseDir) throw new Error('BENCH_BASE_DIR must name a dist/ built before the change');
  const here = join(__dirname, '..', '..', '..', 'dist');
  const server = await startRedis();
  try {
    const url = `redis://127.0.0.1:${server.port}`;
    for (const backend of ['redis', 'memory'] as const) {
      const target = backend === 'redis' ? url : undefined;
      const builds = [build('base', baseDir, target), build('this', here, target)] as const;
      try {
        await compare(backend, builds);
      } finally {
        await Promise.all(builds.map((b) => b.close()));
      }
    }
  } finally {
    await server.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
