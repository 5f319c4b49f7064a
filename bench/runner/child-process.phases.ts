import type { Redis } from 'ioredis';
import type { BenchConfig } from '../bench.config';
import { adapterInfo } from '../peers/adapter.registry';
import type { BenchEnv } from '../peers/lock-adapter.interface';
import type { ContendedRow, HeldScaleResult, Outcome } from '../report/results.types';
import { ContendedProcesses, variantLabel } from '../scenarios/contended.scenario';
import { HELD_SCALE_CHILD, HeldScaleTask } from '../scenarios/held-scale.scenario';
import { ChildPool } from '../support/child.pool';
import { log } from '../support/run.log';
import { logContended, step } from './phase.step';

/** Contended runs across worker processes, for every contender that locks across processes. */
export async function multiProcessPhase(
  ids: readonly string[],
  env: BenchEnv,
  counter: Redis,
  config: BenchConfig,
  contended: ContendedRow[],
  childPids: Set<number>,
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
        logContended(id, label, c);
      }
    }
  } finally {
    await pool.stop();
    pool.pids.forEach((pid) => childPids.delete(pid));
  }
}

/** Held-lock scale of our library: every row of the config, each backend in a fresh child process. */
export async function heldScalePhase(
  ids: readonly string[],
  env: BenchEnv,
  config: BenchConfig,
  childPids: Set<number>,
): Promise<Outcome<HeldScaleResult>[]> {
  const out: Outcome<HeldScaleResult>[] = [];
  for (const row of config.heldScale) {
    const { backends, ...bounds } = row;
    for (const id of ids.filter((i) => adapterInfo(i).kind === 'ours')) {
      const backend = adapterInfo(id).backend;
      // The child measures the plain library of `backend`: another contender of ours on that
      // backend (ours/memory+metrics) would only measure it again under its own name.
      if (!backends.includes(backend) || id !== `ours/${backend}`) continue;
      // --expose-gc: heap per lock is read after full collections.
      const pool = ChildPool.start(HELD_SCALE_CHILD, 1, {}, ['--expose-gc']);
      pool.pids.forEach((pid) => childPids.add(pid));
      try {
        const task: HeldScaleTask = {
          backend,
          env,
          ...bounds,
          keyPrefix: `bench:${Date.now().toString(36)}:held`,
        };
        const r = await step(`held-lock scale ${row.locks}`, id, 240_000, () =>
          pool.call<HeldScaleResult>(0, 'run', task, 230_000),
        );
        out.push(r);
        if (!('error' in r)) {
          log(
            `${id} held ${r.locks} ttl ${r.ttlMs}: ${r.renewOpsPerSec?.toFixed(1) ?? '-'} requests/s, lag p99 ${r.lagP99Ms.toFixed(1)} ms max ${r.lagMaxMs.toFixed(1)} ms, heap ${r.heapPerLockBytes?.toFixed(0) ?? '-'} B/lock, rss ${r.rssMb.toFixed(0)} MB`,
          );
        }
      } finally {
        await pool.stop();
        pool.pids.forEach((pid) => childPids.delete(pid));
      }
    }
  }
  return out;
}
