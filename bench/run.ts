/**
 * `npm run bench`: starts its own redis-server and etcd on free 127.0.0.1 ports, runs every
 * scenario for our library, each peer (defaults and tuned) and the raw floors, writes
 * bench/results/latest.md and latest.json, and stops the servers by PID (also on error).
 *
 * BENCH_QUICK=1: a ~1-minute smoke run, written to $BENCH_OUT or a temporary directory.
 * BENCH_ONLY=<regex>: only the contenders whose id matches. BENCH_OUT=<dir>: where to write.
 * BENCH_ONLY=faults: only the fault scenarios, written to faults.md / faults.json (see
 * bench.config.ts).
 */
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Redis } from 'ioredis';
import { startEtcd } from '../test/servers/etcd.server';
import { startRedis } from '../test/servers/redis.server';
import { removeDir, ServerProcess, stopPid } from '../test/servers/server.process';
import { BenchConfig, benchConfig } from './bench.config';
import { etcdPutRate, redisSetRate } from './floors/round-trip.floor';
import { ADAPTER_IDS, adapterInfo, createAdapter } from './peers/adapter.registry';
import type { BenchEnv, LockAdapter } from './peers/lock-adapter.interface';
import { renderJson } from './report/json.report';
import { renderFaultsMarkdown, renderMarkdown } from './report/markdown.report';
import type {
  BenchResults,
  ContendedRow,
  DeadWaiterResult,
  FrozenServerResult,
  HandoffResult,
  HeldScaleResult,
  Outcome,
  UncontendedResult,
} from './report/results.types';
import { computeFaultTargets, computeTargets } from './report/targets.report';
import { fetchText } from './scenarios/backend.counters';
import {
  ContendedProcesses,
  runContendedInProcess,
  variantLabel,
} from './scenarios/contended.scenario';
import {
  HandoffRound,
  runHandoffQueued,
  runHandoffSingleRound,
  summarizeHandoffSingle,
} from './scenarios/handoff.scenario';
import { runDeadWaiter } from './scenarios/dead-waiter.scenario';
import { runFrozenServer } from './scenarios/frozen-server.scenario';
import type { HeldScaleTask } from './scenarios/held-scale.scenario';
import {
  runUncontendedRound,
  summarizeUncontended,
  UncontendedRound,
} from './scenarios/uncontended.scenario';
import { ChildPool } from './support/child.pool';
import { errorMessage, withTimeout } from './support/time.util';

type AdapterMeta = BenchResults['adapters'][number];

const t0 = Date.now();
const servers: ServerProcess[] = [];
const childPids = new Set<number>();
const warnings: string[] = [];
let snapshotDir: string | undefined;

function log(message: string): void {
  process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${message}\n`);
}

/** The repository root: the nearest parent holding this package's package.json. */
function repoRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 10; i++) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string };
      if (pkg.name === 'nestjs-distributed-lock') return dir;
    }
    dir = dirname(dir);
  }
  throw new Error('cannot find the nestjs-distributed-lock package root');
}

function packageVersion(root: string, name: string): string {
  try {
    const file = join(root, 'node_modules', name, 'package.json');
    return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version.replace(
      /^v/,
      '',
    );
  } catch {
    return 'not installed';
  }
}

/**
 * Copies dist/ aside and points the library loader (here and in child processes) at the copy, so
 * a concurrent `npm run build` elsewhere cannot remove files from under a running bench.
 */
function snapshotLibrary(root: string): void {
  const dist = join(root, 'dist');
  if (!existsSync(join(dist, 'index.js')))
    throw new Error('dist/ is missing: run `npm run build` first');
  snapshotDir = join(root, 'dist-bench', `lib-snapshot-${process.pid}`);
  rmSync(snapshotDir, { recursive: true, force: true });
  cpSync(dist, snapshotDir, { recursive: true });
  process.env.BENCH_LIB_DIR = snapshotDir;
}

let cleaned = false;
async function cleanup(): Promise<void> {
  if (cleaned) return;
  cleaned = true;
  for (const pid of childPids) await stopPid(pid);
  for (const server of servers) {
    // A fault scenario may have left its server frozen (SIGSTOP) when it was interrupted.
    try {
      process.kill(server.pid, 'SIGCONT');
    } catch {
      /* already gone */
    }
    await server.stop();
    removeDir(server.dir);
  }
  if (snapshotDir) rmSync(snapshotDir, { recursive: true, force: true });
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping servers`);
    void cleanup().finally(() => process.exit(130));
  });
}
process.on('unhandledRejection', (reason) => {
  warnings.push(`unhandled rejection: ${errorMessage(reason)}`);
  log(`warning: unhandled rejection: ${errorMessage(reason)}`);
});
process.on('uncaughtException', (err) => {
  warnings.push(`uncaught exception: ${errorMessage(err)}`);
  log(`warning: uncaught exception: ${errorMessage(err)}`);
});

/** Runs one measurement under a watchdog; a failure becomes an error row, never a crash. */
async function step<T>(
  label: string,
  adapter: string,
  boundMs: number,
  fn: () => Promise<T>,
): Promise<Outcome<T>> {
  try {
    return await withTimeout(fn(), boundMs, label);
  } catch (err) {
    log(`${adapter} ${label}: FAILED ${errorMessage(err)}`);
    return { adapter, error: `${label}: ${errorMessage(err)}` };
  }
}

async function serverVersions(
  env: BenchEnv,
  counter: Redis,
): Promise<{ redis: string; etcd: string }> {
  const info = await counter.info('server');
  const redis = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
  let etcd = 'unknown';
  try {
    etcd = (JSON.parse(await fetchText(`${env.etcdHost}/version`, 5_000)) as { etcdserver: string })
      .etcdserver;
  } catch {
    /* reported as unknown */
  }
  return { redis, etcd };
}

/** What the in-process phases collect. */
interface InProcessResults {
  readonly adapters: AdapterMeta[];
  readonly uncontended: Outcome<UncontendedResult>[];
  readonly handoff: Outcome<HandoffResult>[];
  readonly contended: ContendedRow[];
}

/** An open contender of the in-process phases. */
interface Contender {
  readonly id: string;
  readonly adapter: LockAdapter;
  /** Key prefix of this contender in this run. */
  readonly tag: string;
}

/** Creates every contender; one that cannot be created gets error rows in every table. */
async function openContenders(
  ids: readonly string[],
  env: BenchEnv,
  config: BenchConfig,
  results: InProcessResults,
): Promise<Contender[]> {
  const open: Contender[] = [];
  const run = Date.now().toString(36);
  for (const id of ids) {
    const info = adapterInfo(id);
    try {
      const adapter = await withTimeout(createAdapter(id, env), 30_000, 'create');
      results.adapters.push({
        id,
        backend: adapter.backend,
        kind: adapter.kind,
        settings: adapter.settings,
        ...(adapter.note ? { note: adapter.note } : {}),
      });
      if (adapter.note) log(`${id}: note: ${adapter.note}`);
      open.push({ id, adapter, tag: `bench:${run}:${id}` });
    } catch (err) {
      const error = `create: ${errorMessage(err)}`;
      log(`${id}: cannot create: ${error}`);
      results.adapters.push({ id, backend: info.backend, kind: info.kind, settings: '', error });
      results.uncontended.push({ adapter: id, error });
      results.handoff.push({ adapter: id, error: `[1w] ${error}` });
      results.handoff.push({ adapter: id, error: `[${config.handoffQueued.waiters}w] ${error}` });
      for (const v of [...config.inProcessVariants, ...config.multiProcessVariants]) {
        results.contended.push({ adapter: id, error, variant: variantLabel(v) });
      }
    }
  }
  return open;
}

/**
 * Uncontended and single-waiter handoff, in `config.rounds` short rounds interleaved across all
 * contenders, so that a noisy moment on the shared machine does not land on one contender only.
 */
async function interleavedPhase(
  contenders: readonly Contender[],
  config: BenchConfig,
  results: InProcessResults,
): Promise<void> {
  const R = config.rounds;
  const unc = new Map<string, UncontendedRound[]>();
  const hand = new Map<string, HandoffRound[]>();
  const failed = new Map<string, string>();
  const uncRound = {
    ...config.uncontended,
    cycles: Math.ceil(config.uncontended.cycles / R),
    ms: config.uncontended.ms / R,
  };
  const handRound = {
    ...config.handoff,
    samples: Math.ceil(config.handoff.samples / R),
    ms: config.handoff.ms / R,
  };
  for (let r = 0; r < R; r++) {
    for (const c of contenders) {
      if (!failed.has(`u:${c.id}`)) {
        const u = await step('uncontended', c.id, uncRound.ms + 30_000, () =>
          runUncontendedRound(c.adapter, `${c.tag}:u${r}`, {
            ...uncRound,
            warmup: r === 0 ? uncRound.warmup : 5,
          }),
        );
        if ('error' in u) failed.set(`u:${c.id}`, u.error);
        else unc.set(c.id, [...(unc.get(c.id) ?? []), u]);
      }
      if (!failed.has(`h:${c.id}`)) {
        const h = await step('[1w] handoff', c.id, handRound.ms + 40_000, () =>
          runHandoffSingleRound(c.adapter, `${c.tag}:h1`, handRound),
        );
        if ('error' in h) failed.set(`h:${c.id}`, h.error);
        else hand.set(c.id, [...(hand.get(c.id) ?? []), h]);
      }
    }
    log(`interleaved round ${r + 1}/${R} done`);
  }
  for (const c of contenders) {
    const uError = failed.get(`u:${c.id}`);
    const u = uError
      ? { adapter: c.id, error: uError }
      : summarizeUncontended(c.id, unc.get(c.id) ?? []);
    results.uncontended.push(u);
    if (!('error' in u)) log(`${c.id} uncontended: ${u.cyclesPerSec.toFixed(0)} cycles/s`);
    const hError = failed.get(`h:${c.id}`);
    const h = hError
      ? { adapter: c.id, error: hError }
      : summarizeHandoffSingle(c.id, hand.get(c.id) ?? []);
    results.handoff.push(h);
    if (!('error' in h))
      log(`${c.id} handoff 1 waiter: p50 ${h.latencyMs.p50.toFixed(3)} ms (n ${h.latencyMs.n})`);
  }
}

/** Queued handoff and in-process contended runs, one contender after the other. */
async function perContenderPhase(
  c: Contender,
  counter: Redis,
  config: BenchConfig,
  results: InProcessResults,
): Promise<void> {
  const q = config.handoffQueued;
  const hq = await step(`[${q.waiters}w] handoff`, c.id, q.ms + 40_000, () =>
    runHandoffQueued(c.adapter, `${c.tag}:h${q.waiters}`, q.waiters, q.holdMs, q),
  );
  results.handoff.push(hq);
  if (!('error' in hq)) {
    log(
      `${c.id} handoff ${q.waiters} queued: p50 ${hq.latencyMs.p50.toFixed(3)} ms (n ${hq.latencyMs.n})`,
    );
  }
  for (const variant of config.inProcessVariants) {
    const label = variantLabel(variant);
    const row = await step(`contended ${label}`, c.id, config.contended.ms + 40_000, () =>
      runContendedInProcess(c.adapter, counter, `${c.tag}:c:${label}`, variant, config.contended),
    );
    results.contended.push({ ...row, variant: label });
    if (!('error' in row)) {
      log(
        `${c.id} contended ${label}: ${row.grantsPerSec.toFixed(0)}/s, switches ${row.ownerSwitchPct.toFixed(0)}%, lost ${row.lostUpdates}`,
      );
    }
  }
}

async function closeContenders(contenders: readonly Contender[]): Promise<void> {
  for (const c of contenders) {
    await withTimeout(c.adapter.close(), 15_000, 'close').catch((err: unknown) =>
      log(`${c.id}: close failed: ${errorMessage(err)}`),
    );
  }
}

async function multiProcessPhase(
  ids: readonly string[],
  env: BenchEnv,
  counter: Redis,
  config: BenchConfig,
  contended: ContendedRow[],
): Promise<void> {
  const processes = Math.max(...config.multiProcessVariants.map((v) => v.processes));
  const pool = ContendedProcesses.start(processes);
  pool.pids.forEach((pid) => childPids.add(pid));
  try {
    for (const id of ids) {
      if (adapterInfo(id).singleProcess) continue;
      for (const variant of config.multiProcessVariants) {
        const label = variantLabel(variant);
        const key = `bench:${Date.now().toString(36)}:${id}:mp:${label}`;
        const c = await step(`contended ${label}`, id, config.contended.ms + 90_000, () =>
          pool.run(id, env, counter, key, variant, config.contended),
        );
        contended.push({ ...c, variant: label });
        if (!('error' in c)) {
          log(
            `${id} contended ${label}: ${c.grantsPerSec.toFixed(0)}/s, switches ${c.ownerSwitchPct.toFixed(0)}%, lost ${c.lostUpdates}`,
          );
        }
      }
    }
  } finally {
    await pool.stop();
    pool.pids.forEach((pid) => childPids.delete(pid));
  }
}

async function heldScalePhase(
  ids: readonly string[],
  env: BenchEnv,
  config: BenchConfig,
): Promise<Outcome<HeldScaleResult>[]> {
  const out: Outcome<HeldScaleResult>[] = [];
  for (const id of ids.filter((i) => adapterInfo(i).kind === 'ours')) {
    const backend = adapterInfo(id).backend;
    const pool = ChildPool.start(join(__dirname, 'scenarios', 'held-scale.child.js'), 1, {});
    pool.pids.forEach((pid) => childPids.add(pid));
    try {
      const task: HeldScaleTask = {
        backend,
        env,
        ...config.heldScale,
        keyPrefix: `bench:${Date.now().toString(36)}:held`,
      };
      const r = await step('held-lock scale', id, 240_000, () =>
        pool.call<HeldScaleResult>(0, 'run', task, 230_000),
      );
      out.push(r);
      if (!('error' in r)) {
        log(
          `${id} held ${r.locks}: ${r.renewOpsPerSec?.toFixed(1) ?? '-'} requests/s, lag p99 ${r.lagP99Ms.toFixed(1)} ms, rss ${r.rssMb.toFixed(0)} MB`,
        );
      }
    } finally {
      await pool.stop();
      pool.pids.forEach((pid) => childPids.delete(pid));
    }
  }
  return out;
}

/** What the fault phase collects. */
interface FaultResults {
  readonly deadWaiter: Outcome<DeadWaiterResult>[];
  readonly frozenServer: Outcome<FrozenServerResult>[];
}

/**
 * Dead waiter, then frozen server, each on both backends at once (their figures are timer-bound
 * seconds, not CPU-bound). Frozen servers are dedicated ones, started and stopped by the scenario.
 */
async function faultsPhase(env: BenchEnv, config: BenchConfig): Promise<FaultResults> {
  const { backends, deadWaiter, frozenServer } = config.faults;
  const dead = await Promise.all(
    backends.map((backend) =>
      step(
        'dead waiter',
        `ours/${backend}`,
        deadWaiter.repetitions * (deadWaiter.liveWait + 30_000) + 90_000,
        () => runDeadWaiter(backend, env, deadWaiter, childPids, log),
      ),
    ),
  );
  const tracker = {
    add: (server: ServerProcess) => servers.push(server),
    delete: (server: ServerProcess) => {
      const i = servers.indexOf(server);
      if (i >= 0) servers.splice(i, 1);
    },
  };
  const frozen = await Promise.all(
    backends.map((backend) =>
      step('frozen server', `ours/${backend}`, 3 * (frozenServer.hangMs + 30_000) + 60_000, () =>
        runFrozenServer(backend, frozenServer, tracker, log),
      ),
    ),
  );
  return {
    deadWaiter: dead,
    frozenServer: frozen.flatMap((r) => ('error' in r ? [r] : r)),
  };
}

/** `BENCH_ONLY=faults`: the fault phase alone, reported in faults.md / faults.json. */
async function faultsOnlyRun(
  env: BenchEnv,
  counter: Redis,
  config: BenchConfig,
  outDir: string,
  startedAt: string,
): Promise<void> {
  const versions = await serverVersions(env, counter);
  const faults = await faultsPhase(env, config);
  const results = {
    startedAt,
    durationSeconds: (Date.now() - t0) / 1000,
    quick: config.quick,
    machine: {
      node: process.version,
      cpus: cpus().length,
      platform: `${process.platform}-${process.arch}`,
      redis: versions.redis,
      etcd: versions.etcd,
    },
    settings: {
      ...config.faults.deadWaiter.tuning,
      repetitions: config.faults.deadWaiter.repetitions,
      ...(warnings.length > 0 ? { warnings: warnings.slice(0, 5).join(' | ') } : {}),
    },
    ...faults,
  };
  const targets = computeFaultTargets(results);
  const markdown = renderFaultsMarkdown(results, targets);
  mkdirSync(outDir, { recursive: true });
  writeAtomically(join(outDir, 'faults.json'), renderJson({ ...results, targets }));
  writeAtomically(join(outDir, 'faults.md'), markdown);
  process.stdout.write(markdown);
  log(`wrote ${join(outDir, 'faults.md')} and faults.json`);
}

function writeAtomically(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

async function main(): Promise<void> {
  const startedAt = new Date().toISOString();
  const config = benchConfig();
  const root = repoRoot();
  const outDir =
    process.env.BENCH_OUT ??
    (config.quick ? join(tmpdir(), 'ndl-bench-quick') : join(root, 'bench', 'results'));
  log(
    `${config.quick ? 'quick' : 'full'}${config.faultsOnly ? ' fault-only' : ''} run; results to ${outDir}`,
  );
  snapshotLibrary(root);

  const redis = await startRedis();
  servers.push(redis);
  const etcd = await startEtcd();
  servers.push(etcd);
  const env: BenchEnv = {
    redisUrl: `redis://127.0.0.1:${redis.port}`,
    etcdHost: `http://127.0.0.1:${etcd.port}`,
  };
  log(`redis pid ${redis.pid} on ${env.redisUrl}; etcd pid ${etcd.pid} on ${env.etcdHost}`);
  const counter = new Redis(env.redisUrl, { lazyConnect: true });
  await counter.connect();
  try {
    if (config.faultsOnly) {
      await faultsOnlyRun(env, counter, config, outDir, startedAt);
      return;
    }
    const versions = await serverVersions(env, counter);
    const setRate = await redisSetRate(env, config.roundTrip.ms, config.roundTrip.maxOps);
    const putRate = await etcdPutRate(env, config.roundTrip.ms, config.roundTrip.maxOps);
    log(
      `floors: redis SET ${setRate.perSecond.toFixed(0)}/s, etcd put ${putRate.perSecond.toFixed(0)}/s`,
    );

    const ids = ADAPTER_IDS.filter((id) => !config.only || config.only.test(id));
    const partial: InProcessResults = { adapters: [], uncontended: [], handoff: [], contended: [] };
    const contenders = await openContenders(ids, env, config, partial);
    try {
      await interleavedPhase(contenders, config, partial);
      for (const c of contenders) await perContenderPhase(c, counter, config, partial);
    } finally {
      await closeContenders(contenders);
    }
    const opened = contenders.map((c) => c.id);
    await multiProcessPhase(opened, env, counter, config, partial.contended);
    const heldScale = await heldScalePhase(ids, env, config);
    const faults = await faultsPhase(env, config);

    const root2 = root;
    const results: BenchResults = {
      startedAt,
      durationSeconds: (Date.now() - t0) / 1000,
      quick: config.quick,
      machine: {
        node: process.version,
        cpus: cpus().length,
        platform: `${process.platform}-${process.arch}`,
        redis: versions.redis,
        etcd: versions.etcd,
      },
      settings: {
        ttlMs: config.ttl,
        rounds: config.rounds,
        acquireWaitMs: 10_000,
        uncontended: `${config.uncontended.cycles} cycles or ${config.uncontended.ms} ms`,
        handoff: `${config.handoff.samples} samples or ${config.handoff.ms} ms, settle ${config.handoff.settleMs}-${config.handoff.settleMs + 3} ms`,
        handoffQueued: `${config.handoffQueued.waiters} waiters + holder, hold ${config.handoffQueued.holdMs} ms`,
        contended: `${config.contended.targetGrants} grants or ${config.contended.ms} ms`,
        heldScale: `${config.heldScale.locks} locks, ttl ${config.heldScale.ttl} ms, window ${config.heldScale.windowMs} ms`,
        faults: `${config.faults.deadWaiter.repetitions} dead-waiter repetitions, live waiter wait ${config.faults.deadWaiter.liveWait} ms; commandTimeout ${config.faults.deadWaiter.tuning.commandTimeout} ms, claimWindow ${config.faults.deadWaiter.tuning.claimWindow} ms, sessionTtl ${config.faults.deadWaiter.tuning.sessionTtl} ms`,
        peers: [
          `redlock ${packageVersion(root2, 'redlock')}`,
          `@sesamecare-oss/redlock ${packageVersion(root2, '@sesamecare-oss/redlock')}`,
          `redis-semaphore ${packageVersion(root2, 'redis-semaphore')}`,
          `etcd3 ${packageVersion(root2, 'etcd3')}`,
          `ioredis ${packageVersion(root2, 'ioredis')}`,
        ].join(', '),
        ...(warnings.length > 0 ? { warnings: warnings.slice(0, 5).join(' | ') } : {}),
      },
      adapters: partial.adapters,
      floors: { redisSetPerSec: setRate.perSecond, etcdPutPerSec: putRate.perSecond },
      uncontended: partial.uncontended,
      contended: partial.contended,
      handoff: partial.handoff,
      heldScale,
      ...faults,
    };
    const targets = computeTargets(results);
    const markdown = renderMarkdown(results, targets);
    mkdirSync(outDir, { recursive: true });
    writeAtomically(join(outDir, 'latest.json'), renderJson({ ...results, targets }));
    writeAtomically(join(outDir, 'latest.md'), markdown);
    process.stdout.write(markdown);
    log(
      `wrote ${join(outDir, 'latest.md')} and latest.json in ${((Date.now() - t0) / 1000).toFixed(0)} s`,
    );
  } finally {
    counter.disconnect();
  }
}

main()
  .then(
    () => cleanup().then(() => process.exit(0)),
    (err: unknown) => {
      log(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      return cleanup().then(() => process.exit(1));
    },
  )
  .catch(() => process.exit(1));
