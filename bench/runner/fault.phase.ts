import type { BenchConfig } from '../bench.config';
import type { BenchEnv } from '../peers/lock-adapter.interface';
import type { BenchResults } from '../report/results.types';
import { runDeadWaiter } from '../scenarios/dead-waiter.scenario';
import { runFrozenServer } from '../scenarios/frozen-server.scenario';
import type { BenchServers } from '../support/bench.servers';
import { log } from '../support/run.log';
import { step } from './phase.step';

/** What the fault phase collects. */
export type FaultResults = Pick<BenchResults, 'deadWaiter' | 'frozenServer'>;

/**
 * Dead waiter, then frozen server, each on both backends at once (their figures are timer-bound
 * seconds, not CPU-bound). Frozen servers are dedicated ones, started and stopped by the scenario.
 */
export async function faultsPhase(
  env: BenchEnv,
  config: BenchConfig,
  servers: BenchServers,
): Promise<FaultResults> {
  const { backends, deadWaiter, frozenServer } = config.faults;
  const dead = await Promise.all(
    backends.map((backend) =>
      step(
        'dead waiter',
        `ours/${backend}`,
        deadWaiter.repetitions * (deadWaiter.liveWait + 30_000) + 90_000,
        () => runDeadWaiter(backend, env, deadWaiter, servers.childPids, log),
      ),
    ),
  );
  const frozen = await Promise.all(
    backends.map((backend) =>
      step('frozen server', `ours/${backend}`, 3 * (frozenServer.hangMs + 30_000) + 60_000, () =>
        runFrozenServer(backend, frozenServer, servers.tracker, log),
      ),
    ),
  );
  return {
    deadWaiter: dead,
    frozenServer: frozen.flatMap((r) => ('error' in r ? [r] : r)),
  };
}
