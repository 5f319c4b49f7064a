import type { Redis } from 'ioredis';
import type { BenchConfig } from '../bench.config';
import { etcdPutRate, redisPubSubP50, redisSetRate } from '../floors/round-trip.floor';
import { ADAPTER_IDS, adapterInfo } from '../peers/adapter.registry';
import type { BenchEnv } from '../peers/lock-adapter.interface';
import type { BenchResults } from '../report/results.types';
import { BenchServers, serverVersions } from '../support/bench.servers';
import { log } from '../support/run.log';
import { heldScalePhase, multiProcessPhase } from './child-process.phases';
import { FaultResults, faultsPhase } from './fault.phase';
import {
  closeContenders,
  InProcessResults,
  interleavedPhase,
  openContenders,
  perContenderPhase,
} from './in-process.phases';

/** Where a run measures: the run's servers, a counter connection to its Redis, and its bounds. */
export interface RunContext {
  readonly env: BenchEnv;
  readonly counter: Redis;
  readonly config: BenchConfig;
  readonly servers: BenchServers;
}

/** Versions of the servers measured against. */
export type ServerVersions = Awaited<ReturnType<typeof serverVersions>>;

/** What a `BENCH_ONLY=faults` run measures. */
export interface FaultRunResults extends FaultResults {
  readonly versions: ServerVersions;
}

/** What a full (or quick) run measures. */
export interface ScenarioResults extends FaultRunResults, InProcessResults {
  readonly floors: BenchResults['floors'];
  readonly heldScale: BenchResults['heldScale'];
}

/**
 * Every scenario, in this order: round-trip floors; per contender uncontended, parallel and
 * single-waiter handoff (interleaved rounds), then queued handoff and in-process contended; multi-process
 * contended; held-lock scale; the fault scenarios.
 */
export async function runScenarios({
  env,
  counter,
  config,
  servers,
}: RunContext): Promise<ScenarioResults> {
  const versions = await serverVersions(env, counter);
  const setRate = await redisSetRate(env, config.roundTrip.ms, config.roundTrip.maxOps);
  const putRate = await etcdPutRate(env, config.roundTrip.ms, config.roundTrip.maxOps);
  const pubSubMs = await redisPubSubP50(env, config.roundTrip.ms, config.roundTrip.pubSubSamples);
  log(
    `floors: redis SET ${setRate.perSecond.toFixed(0)}/s (p50 ${setRate.p50Ms.toFixed(3)} ms), pub/sub delivery p50 ${pubSubMs.toFixed(3)} ms, etcd put ${putRate.perSecond.toFixed(0)}/s`,
  );

  const ids = ADAPTER_IDS.filter((id) => !config.only || config.only.test(id));
  const topologies = new Set(ids.flatMap((id) => adapterInfo(id).topology ?? []));
  const topologyEnv: BenchEnv = { ...env, ...(await servers.startTopologies(topologies)) };
  const partial: InProcessResults = {
    adapters: [],
    uncontended: [],
    parallel: [],
    handoff: [],
    contended: [],
  };
  const contenders = await openContenders(ids, topologyEnv, config, partial);
  try {
    await interleavedPhase(contenders, config, partial);
    for (const c of contenders) await perContenderPhase(c, counter, config, partial);
  } finally {
    await closeContenders(contenders);
  }
  // Topology contenders are measured uncontended and in handoff only.
  const singleNode = (id: string): boolean => adapterInfo(id).topology === undefined;
  const opened = contenders.map((c) => c.id).filter(singleNode);
  await multiProcessPhase(opened, env, counter, config, partial.contended, servers.childPids);
  const heldScale = await heldScalePhase(ids.filter(singleNode), env, config, servers.childPids);
  const faults = await faultsPhase(env, config, servers);
  return {
    versions,
    floors: {
      redisSetPerSec: setRate.perSecond,
      etcdPutPerSec: putRate.perSecond,
      redisSetP50Ms: setRate.p50Ms,
      redisPubSubP50Ms: pubSubMs,
    },
    ...partial,
    heldScale,
    ...faults,
  };
}

/** `BENCH_ONLY=faults`: the fault scenarios alone. */
export async function runFaultScenarios({
  env,
  counter,
  config,
  servers,
}: RunContext): Promise<FaultRunResults> {
  const versions = await serverVersions(env, counter);
  const faults = await faultsPhase(env, config, servers);
  return { versions, ...faults };
}
