import { cpus } from 'node:os';
import type { BenchConfig } from '../bench.config';
import type { FaultRunResults, ScenarioResults, ServerVersions } from '../runner/scenario.runner';
import { packageVersion } from '../support/library.snapshot';
import { elapsedSeconds, warningsSetting } from '../support/run.log';
import type { BenchResults } from './results.types';

/** The results of a `BENCH_ONLY=faults` run, as faults.md and faults.json report them. */
export type FaultReport = Pick<
  BenchResults,
  'startedAt' | 'durationSeconds' | 'quick' | 'machine' | 'settings' | 'deadWaiter' | 'frozenServer'
>;

function machine(versions: ServerVersions): BenchResults['machine'] {
  return {
    node: process.version,
    cpus: cpus().length,
    platform: `${process.platform}-${process.arch}`,
    redis: versions.redis,
    etcd: versions.etcd,
  };
}

/** latest.json / latest.md: every measurement with the settings in force and the peers' versions. */
export function benchResults(
  startedAt: string,
  config: BenchConfig,
  root: string,
  run: ScenarioResults,
): BenchResults {
  return {
    startedAt,
    durationSeconds: elapsedSeconds(),
    quick: config.quick,
    machine: machine(run.versions),
    settings: {
      ttlMs: config.ttl,
      rounds: config.rounds,
      acquireWaitMs: 10_000,
      uncontended: `${config.uncontended.cycles} cycles or ${config.uncontended.ms} ms`,
      parallel: `${config.parallel.callers} callers, ${config.parallel.cycles} cycles or ${config.parallel.ms} ms`,
      handoff: `${config.handoff.samples} samples or ${config.handoff.ms} ms, settle ${config.handoff.settleMs}-${config.handoff.settleMs + 3} ms`,
      handoffQueued: `${config.handoffQueued.waiters} waiters + holder, hold ${config.handoffQueued.holdMs} ms`,
      contended: `${config.contended.targetGrants} grants or ${config.contended.ms} ms, after a warm-up of ${config.contended.warmupGrants} grants per process or ${config.contended.warmupMs} ms on another key`,
      heldScale: config.heldScale
        .map(
          (h) =>
            `${h.locks} locks ttl ${h.ttl} ms window ${h.windowMs} ms (${h.backends.join('/')})`,
        )
        .join('; '),
      faults: `${config.faults.deadWaiter.repetitions} dead-waiter repetitions, live waiter wait ${config.faults.deadWaiter.liveWait} ms; commandTimeout ${config.faults.deadWaiter.tuning.commandTimeout} ms, claimWindow ${config.faults.deadWaiter.tuning.claimWindow} ms, sessionTtl ${config.faults.deadWaiter.tuning.sessionTtl} ms`,
      peers: [
        `redlock ${packageVersion(root, 'redlock')}`,
        `@sesamecare-oss/redlock ${packageVersion(root, '@sesamecare-oss/redlock')}`,
        `redis-semaphore ${packageVersion(root, 'redis-semaphore')}`,
        `etcd3 ${packageVersion(root, 'etcd3')}`,
        `ioredis ${packageVersion(root, 'ioredis')}`,
      ].join(', '),
      ...warningsSetting(),
    },
    adapters: run.adapters,
    floors: run.floors,
    uncontended: run.uncontended,
    parallel: run.parallel,
    contended: run.contended,
    handoff: run.handoff,
    heldScale: run.heldScale,
    deadWaiter: run.deadWaiter,
    frozenServer: run.frozenServer,
  };
}

/** faults.json / faults.md: the fault measurements with the backend tuning in force. */
export function faultResults(
  startedAt: string,
  config: BenchConfig,
  run: FaultRunResults,
): FaultReport {
  return {
    startedAt,
    durationSeconds: elapsedSeconds(),
    quick: config.quick,
    machine: machine(run.versions),
    settings: {
      ...config.faults.deadWaiter.tuning,
      repetitions: config.faults.deadWaiter.repetitions,
      ...warningsSetting(),
    },
    deadWaiter: run.deadWaiter,
    frozenServer: run.frozenServer,
  };
}
