/**
 * What observing locks costs, and that not observing costs nothing, on the memory backend (where
 * nothing hides the engine's own CPU behind a network round trip):
 *
 *   npm run build && npx tsc -p bench/tsconfig.json && \
 *     BENCH_BASE_DIR=<a dist/ built before the events> node dist-bench/bench/scenarios/observing-cost.main.js
 *
 * In one process, interleaved rounds of sequential acquire + release (one caller) and of 64
 * parallel callers, each on fresh keys, through `LockService`: `base` (BENCH_BASE_DIR, optional),
 * `plain` (this build, nobody listening), `listener` (a no-op listener on every event type) and
 * `metrics` (registerLockMetrics on a fresh prom-client registry). Prints the median cycles/s per
 * variant and its ratio to `plain` (or to `base`), as JSON lines and a table. Bounded: ROUNDS
 * rounds of CYCLES cycles each, and each round at most ROUND_MS.
 */
import 'reflect-metadata';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Test } from '@nestjs/testing';
import { Registry } from 'prom-client';
import { median } from '../stats';

const ROUNDS = Number(process.env.ROUNDS ?? 7);
const CYCLES = Number(process.env.CYCLES ?? 20_000);
const ROUND_MS = 5_000;
const PARALLEL = 64;

type Library = typeof import('nestjs-distributed-lock');
type Prometheus = typeof import('nestjs-distributed-lock/prometheus');

const load = createRequire(__filename);
const here = join(__dirname, '..', '..', '..', 'dist');

interface Variant {
  readonly name: string;
  readonly lib: Library;
  readonly observe?: (locks: InstanceType<Library['LockService']>) => void;
}

async function service(variant: Variant) {
  const { DistributedLockModule, LockService } = variant.lib;
  const moduleRef = await Test.createTestingModule({
    imports: [DistributedLockModule.forRoot({ backend: { type: 'memory' }, wait: 0 })],
  }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  const locks = app.get(LockService);
  variant.observe?.(locks);
  return { app, locks };
}

/** Cycles per second of `callers` concurrent loops sharing `CYCLES` acquire + release cycles. */
async function round(variant: Variant, callers: number, tag: string): Promise<number> {
  const { app, locks } = await service(variant);
  try {
    let next = 0;
    const started = performance.now();
    const deadline = started + ROUND_MS;
    await Promise.all(
      Array.from({ length: callers }, async () => {
        while (next < CYCLES && performance.now() < deadline) {
          const i = next++;
          const lock = await locks.acquire(`${tag}:${i}`);
          await lock.release();
        }
      }),
    );
    return (next / (performance.now() - started)) * 1000;
  } finally {
    await app.close();
  }
}

async function main(): Promise<void> {
  const lib = load(here) as Library;
  const prometheus = load(join(here, 'prometheus')) as Prometheus;
  const variants: Variant[] = [];
  const base = process.env.BENCH_BASE_DIR;
  if (base) variants.push({ name: 'base', lib: load(base) as Library });
  variants.push(
    { name: 'plain', lib },
    {
      name: 'listener',
      lib,
      observe: (locks) => {
        for (const type of lib.LOCK_EVENT_TYPES) locks.on(type, () => undefined);
      },
    },
    {
      name: 'metrics',
      lib,
      observe: (locks) => {
        prometheus.registerLockMetrics(locks, { registry: new Registry() });
      },
    },
  );
  const reference = base ? 'base' : 'plain';
  for (const [shape, callers] of [
    ['sequential', 1],
    ['parallel-64', PARALLEL],
  ] as const) {
    const rates = new Map<string, number[]>(variants.map((v) => [v.name, []]));
    for (let r = 0; r < ROUNDS; r++) {
      for (const variant of variants) {
        rates
          .get(variant.name)
          ?.push(await round(variant, callers, `${shape}:${variant.name}:${r}`));
      }
    }
    const ref = median(rates.get(reference) ?? []);
    for (const variant of variants) {
      const all = rates.get(variant.name) ?? [];
      const rate = median(all);
      // Ratios per round (same round, same load) as well as of the medians.
      const perRound = all.map((x, i) => x / (rates.get(reference)?.[i] ?? x));
      console.log(
        JSON.stringify({
          shape,
          variant: variant.name,
          cyclesPerSec: Math.round(rate),
          vsReference: Number((rate / ref).toFixed(3)),
          medianRoundRatio: Number(median(perRound).toFixed(3)),
          rounds: all.map(Math.round),
        }),
      );
    }
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
