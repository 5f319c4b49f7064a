import type { Redis } from 'ioredis';
import type { BenchConfig } from '../bench.config';
import { adapterInfo, createAdapter } from '../peers/adapter.registry';
import type { BenchEnv, LockAdapter } from '../peers/lock-adapter.interface';
import type {
  BenchResults,
  ContendedRow,
  HandoffResult,
  Outcome,
  ParallelResult,
  UncontendedResult,
} from '../report/results.types';
import { isError } from '../report/results.types';
import { runContendedInProcess, variantLabel } from '../scenarios/contended.scenario';
import {
  HandoffRound,
  runHandoffQueued,
  runHandoffSingleRound,
  summarizeHandoffSingle,
} from '../scenarios/handoff.scenario';
import { ParallelRound, runParallelRound, summarizeParallel } from '../scenarios/parallel.scenario';
import {
  runUncontendedRound,
  summarizeUncontended,
  UncontendedRound,
} from '../scenarios/uncontended.scenario';
import { log } from '../support/run.log';
import { errorMessage, withTimeout } from '../support/time.util';
import { logContended, step } from './phase.step';

/** What the in-process phases collect. */
export interface InProcessResults {
  readonly adapters: BenchResults['adapters'][number][];
  readonly uncontended: Outcome<UncontendedResult>[];
  readonly parallel: Outcome<ParallelResult>[];
  readonly handoff: Outcome<HandoffResult>[];
  readonly contended: ContendedRow[];
}

/** An open contender of the in-process phases. */
export interface Contender {
  readonly id: string;
  readonly adapter: LockAdapter;
  /** Key prefix of this contender in this run. */
  readonly tag: string;
}

/** Creates every contender; one that cannot be created gets error rows in every table. */
export async function openContenders(
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
      results.parallel.push({ adapter: id, error });
      results.handoff.push({ adapter: id, error: `[1w] ${error}` });
      results.handoff.push({ adapter: id, error: `[${config.handoffQueued.waiters}w] ${error}` });
      if (info.topology) continue;
      for (const v of [...config.inProcessVariants, ...config.multiProcessVariants]) {
        results.contended.push({ adapter: id, error, variant: variantLabel(v) });
      }
    }
  }
  return open;
}

/**
 * Uncontended, parallel and single-waiter handoff, in `config.rounds` short rounds interleaved
 * across all contenders, so that a noisy moment on the shared machine does not land on one
 * contender only (and ratios to a floor are taken round by round).
 */
export async function interleavedPhase(
  contenders: readonly Contender[],
  config: BenchConfig,
  results: InProcessResults,
): Promise<void> {
  const R = config.rounds;
  const unc = new Map<string, UncontendedRound[]>();
  const par = new Map<string, ParallelRound[]>();
  const hand = new Map<string, HandoffRound[]>();
  const failed = new Map<string, string>();
  const uncRound = {
    ...config.uncontended,
    cycles: Math.ceil(config.uncontended.cycles / R),
    ms: config.uncontended.ms / R,
  };
  const parRound = {
    ...config.parallel,
    cycles: Math.ceil(config.parallel.cycles / R),
    ms: config.parallel.ms / R,
  };
  const handRound = {
    ...config.handoff,
    samples: Math.ceil(config.handoff.samples / R),
    ms: config.handoff.ms / R,
  };
  for (let r = 0; r < R; r++) {
    // Phase by phase, each over every contender, in an order reversed every round: a contender's
    // slice then sits within seconds of its floor's, on either side by turns, so a slow spell of
    // the shared machine lands on both (the ratios are taken round by round); the config asks for
    // an even number of rounds, so that both orders count alike.
    const order = r % 2 === 0 ? contenders : [...contenders].reverse();
    /** One phase over every contender still in it; a failure takes the contender out of it. */
    const phase = async <T extends object>(
      label: string,
      phaseKey: string,
      boundMs: number,
      rounds: Map<string, T[]>,
      run: (c: Contender) => Promise<T>,
    ): Promise<void> => {
      for (const c of order) {
        const key = `${phaseKey}:${c.id}`;
        if (failed.has(key)) continue;
        const outcome = await step(label, c.id, boundMs, () => run(c));
        if (isError(outcome)) failed.set(key, outcome.error);
        else rounds.set(c.id, [...(rounds.get(c.id) ?? []), outcome]);
      }
    };
    // An unmeasured slice opens each phase: the first slice after the previous phase (mostly
    // sleeps and waits) ran up to 2x faster than the same contender's other slices.
    await step('uncontended warm-up', order[0].id, uncRound.ms + 30_000, () =>
      runUncontendedRound(order[0].adapter, `${order[0].tag}:uw${r}`, { ...uncRound, warmup: 0 }),
    );
    await phase('uncontended', 'u', uncRound.ms + 30_000, unc, (c) =>
      runUncontendedRound(c.adapter, `${c.tag}:u${r}`, {
        ...uncRound,
        warmup: r === 0 ? uncRound.warmup : 5,
      }),
    );
    await step('parallel warm-up', order[0].id, parRound.ms + 30_000, () =>
      runParallelRound(order[0].adapter, `${order[0].tag}:pw${r}`, { ...parRound, warmup: 0 }),
    );
    await phase('parallel', 'p', parRound.ms + 30_000, par, (c) =>
      runParallelRound(c.adapter, `${c.tag}:p${r}`, {
        ...parRound,
        warmup: r === 0 ? parRound.warmup : 1,
      }),
    );
    await phase('[1w] handoff', 'h', handRound.ms + 40_000, hand, (c) =>
      runHandoffSingleRound(c.adapter, `${c.tag}:h1`, handRound),
    );
    log(`interleaved round ${r + 1}/${R} done`);
  }
  for (const c of contenders) {
    const uError = failed.get(`u:${c.id}`);
    const u = uError
      ? { adapter: c.id, error: uError }
      : summarizeUncontended(c.id, unc.get(c.id) ?? []);
    results.uncontended.push(u);
    if (!('error' in u)) log(`${c.id} uncontended: ${u.cyclesPerSec.toFixed(0)} cycles/s`);
    const pError = failed.get(`p:${c.id}`);
    const p = pError
      ? { adapter: c.id, error: pError }
      : summarizeParallel(c.id, config.parallel.callers, par.get(c.id) ?? []);
    results.parallel.push(p);
    if (!('error' in p)) log(`${c.id} parallel: ${p.cyclesPerSec.toFixed(0)} cycles/s`);
    const hError = failed.get(`h:${c.id}`);
    const h = hError
      ? { adapter: c.id, error: hError }
      : summarizeHandoffSingle(c.id, hand.get(c.id) ?? []);
    results.handoff.push(h);
    if (!('error' in h))
      log(`${c.id} handoff 1 waiter: p50 ${h.latencyMs.p50.toFixed(3)} ms (n ${h.latencyMs.n})`);
  }
}

/**
 * Queued handoff and in-process contended runs, one contender after the other (a topology
 * contender: queued handoff only).
 */
export async function perContenderPhase(
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
  if (c.adapter.topology) return;
  for (const variant of config.inProcessVariants) {
    const label = variantLabel(variant);
    const row = await step(`contended ${label}`, c.id, config.contended.ms + 40_000, () =>
      runContendedInProcess(c.adapter, counter, `${c.tag}:c:${label}`, variant, config.contended),
    );
    results.contended.push({ ...row, variant: label });
    logContended(c.id, label, row);
  }
}

export async function closeContenders(contenders: readonly Contender[]): Promise<void> {
  for (const c of contenders) {
    await withTimeout(c.adapter.close(), 15_000, 'close').catch((err: unknown) =>
      log(`${c.id}: close failed: ${errorMessage(err)}`),
    );
  }
}
