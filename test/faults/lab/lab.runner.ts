import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleepUnlessAborted } from 'node:timers/promises';
import type { LabBackendEntry, LabServer } from '../backends/lab-backend.registry';
import { checkHistory, CheckReport } from '../checker/history.checker';
import { labNow } from '../history/history.event';
import { readHistory } from '../history/history.reader';
import { HistoryWriter } from '../history/history.writer';
import type { NemesisAction, NemesisContext } from '../nemesis/nemesis.action';
import { TcpProxy } from '../proxy/tcp.proxy';
import { ResourceProcess } from '../resource/resource.process';
import { WorkerProcess } from '../workload/worker.process';
import type { LabPhase, LabProfile } from './lab.profile';
import { seededRandom } from '../runtime/seeded.random';

/** What one run of one backend produced. */
export interface LabRun {
  readonly backend: string;
  readonly profile: string;
  /** Whether the backend hands out fencing tokens (its clients write to the resource). */
  readonly fencing: boolean;
  /** It cannot promise mutual exclusion under its server faults (Sentinel, Redlock). */
  readonly unsafeUnderServerFaults: boolean;
  /** It promises mutual exclusion under its server faults too (etcd, Redis with AOF always). */
  readonly safeUnderServerFaults: boolean;
  readonly report: CheckReport;
  readonly historyFiles: readonly string[];
  readonly durationMs: number;
  readonly workerOps: readonly (number | undefined)[];
  /** stderr of workers that printed any (crashes, unexpected logs). */
  readonly workerErrors: readonly string[];
}

/** Waits `ms`, or less once `signal` aborts (never rejects). */
function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return sleepUnlessAborted(ms, undefined, { signal }).catch(() => undefined);
}

export interface LabRunOptions {
  readonly seed?: number;
  /**
   * Aborting it ends the current phase at once, stops everything the run started and rejects
   * the run: what a test does when its time is up, so no part of the lab outlives it.
   */
  readonly signal?: AbortSignal;
}

/**
 * Runs the profile's workload against one backend, phase after phase of faults, then judges the
 * history. Everything it starts (servers, resource, proxies, workers) it stops, also on failure
 * or abort. The workers' stop is a phase of its own, `teardown`, judged as a fault-free one: the
 * operations in flight when the last phase ends finish there, and their grants count too.
 */
export async function runLab(
  entry: LabBackendEntry,
  profile: LabProfile,
  outDir: string,
  options: LabRunOptions = {},
): Promise<LabRun> {
  const seed = options.seed ?? 1;
  const signal = options.signal;
  const workerCount = entry.workload?.workers ?? profile.workers;
  const clientsPerWorker = entry.workload?.clientsPerWorker ?? profile.clientsPerWorker;
  mkdirSync(outDir, { recursive: true });
  const startedAt = performance.now();
  const phases = profile.phases(entry);
  const nemesisPath = join(outDir, 'nemesis.jsonl');
  const resourcePath = join(outDir, 'resource.jsonl');
  const workerPaths = Array.from({ length: workerCount }, (_, i) => join(outDir, `w${i}.jsonl`));
  const nemesis = new HistoryWriter(nemesisPath);
  const totalMs = phases.reduce((ms, p) => ms + p.durationMs + p.settleMs + 5000, 0);
  const keyCount = Math.max(profile.keys, ...phases.map((p) => p.workload?.keys ?? 0));
  let server: LabServer | undefined;
  let resource: ResourceProcess | undefined;
  const proxies: TcpProxy[] = [];
  const workers: WorkerProcess[] = [];
  let workerOps: (number | undefined)[] = [];
  // Phases are logged back to back (one ends where the next starts), so every event has one.
  let current: Pick<LabPhase, 'name' | 'families' | 'mode'> | undefined;
  const enter = (next: typeof current): void => {
    const t = labNow();
    const log = (p: NonNullable<typeof current>, event: 'phase-start' | 'phase-end'): void =>
      nemesis.log({
        t,
        process: 'nemesis',
        event,
        phase: p.name,
        families: p.families,
        mode: p.mode,
      });
    if (current) log(current, 'phase-end');
    current = next;
    if (next) log(next, 'phase-start');
  };
  const workerErrors: string[] = [];
  try {
    server = await entry.start();
    resource = await ResourceProcess.start(phases[0]?.mode ?? 'fenced', resourcePath);
    for (let i = 0; i < workerCount; i++) {
      const proxy = new TcpProxy(server.port);
      await proxy.listen();
      proxies.push(proxy);
    }
    const keys = Array.from({ length: keyCount }, (_, i) => `k${i}`);
    // allSettled: workers that did start are stopped below even when another one failed to.
    const started = await Promise.allSettled(
      workerPaths.map((historyPath, i) =>
        WorkerProcess.start({
          process: `w${i}`,
          clients: clientsPerWorker,
          keys,
          multiKeyEvery: profile.multiKeyEvery,
          ttl: entry.ttl,
          wait: profile.wait,
          holdMs: profile.holdMs,
          writes: profile.writes,
          moduleOptions: {
            backend: server!.clientConfig ?? entry.backend(proxies[i].port),
            keyPrefix: entry.keyPrefix ?? `lab:${entry.name}:`,
            shutdownGrace: 1000,
          },
          resourcePort: resource!.port,
          historyPath,
          maxOps: 1_000_000,
          maxMs: totalMs,
          seed: seed * 100 + i,
        }),
      ),
    );
    for (const result of started) if (result.status === 'fulfilled') workers.push(result.value);
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    nemesis.log({
      t: labNow(),
      process: 'nemesis',
      event: 'run',
      backend: entry.name,
      settleBoundMs: entry.settleBoundMs,
      epochAtT: Date.now(),
      pausedHolderMinMs: entry.pausedHolderMinMs,
    });
    const ctx = context(entry, server, workers, proxies, nemesis, seededRandom(seed), signal);
    const base = { keys: profile.keys, holdMs: profile.holdMs, writes: profile.writes };
    for (const [i, p] of phases.entries()) {
      if (signal?.aborted) break;
      await resource.setMode(p.mode);
      enter(p);
      for (const w of workers) w.tune({ ...base, ...p.workload });
      // Tuned before they start, and inside the first phase: no grant falls outside a phase.
      if (i === 0) for (const w of workers) w.go();
      await runPhase(p, ctx, signal);
    }
  } finally {
    for (const w of workers) w.thaw();
    server?.thaw();
    for (const p of proxies) p.setMode({ kind: 'pass' });
    enter({ name: 'teardown', families: [], mode: current?.mode ?? 'fenced' });
    const stopped = await Promise.all(workers.map((w) => w.stop(profile.wait + 15_000)));
    enter(undefined);
    workerOps = stopped.map((s) => s.ops);
    for (const s of stopped) if (s.errors.trim() !== '') workerErrors.push(s.errors);
    await resource?.stop();
    for (const p of proxies) await p.close();
    await server?.stop();
    nemesis.close();
  }
  if (signal?.aborted)
    throw new Error(`lab run on ${entry.name} aborted; everything it started is stopped`);
  const historyFiles = [nemesisPath, resourcePath, ...workerPaths];
  const report = checkHistory(readHistory(historyFiles));
  return {
    backend: entry.name,
    profile: profile.name,
    fencing: entry.fencing !== false,
    unsafeUnderServerFaults: entry.unsafeUnderServerFaults === true,
    safeUnderServerFaults: entry.safeUnderServerFaults === true,
    report,
    historyFiles,
    durationMs: performance.now() - startedAt,
    workerOps,
    workerErrors,
  };
}

/**
 * A run judged again from the histories it recorded in `dir` (`--rejudge`): the same report a
 * run ends with, by the checker as it is now; what only the live run knew (worker op counts,
 * stderr) is left empty.
 */
export function rejudgeRun(entry: LabBackendEntry, profile: string, dir: string): LabRun {
  const historyFiles = readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .map((f) => join(dir, f));
  const events = readHistory(historyFiles);
  const report = checkHistory(events);
  const first = events.find((e) => e.event === 'run')?.t ?? events[0]?.t ?? 0;
  const last = events[events.length - 1]?.t ?? first;
  return {
    backend: entry.name,
    profile,
    fencing: entry.fencing !== false,
    unsafeUnderServerFaults: entry.unsafeUnderServerFaults === true,
    safeUnderServerFaults: entry.safeUnderServerFaults === true,
    report,
    historyFiles,
    durationMs: last - first,
    workerOps: [],
    workerErrors: [],
  };
}

function context(
  backend: LabBackendEntry,
  server: LabServer,
  workers: readonly WorkerProcess[],
  proxies: readonly TcpProxy[],
  history: HistoryWriter,
  next: () => number,
  signal: AbortSignal | undefined,
): NemesisContext {
  const busy = new Set<string>();
  let faultId = 0;
  return {
    backend,
    server,
    workers,
    proxies,
    random: next,
    signal,
    isBusy: (target) => busy.has(target),
    inject: async (action: NemesisAction, target: string, body: () => Promise<void | boolean>) => {
      if (busy.has(target)) return false;
      busy.add(target);
      const fault = ++faultId;
      const base = {
        process: 'nemesis',
        fault,
        action: action.name,
        family: action.family,
        target,
      };
      history.log({ ...base, t: labNow(), event: 'fault-start' });
      try {
        return (await body()) !== false;
      } finally {
        history.log({ ...base, t: labNow(), event: 'fault-end' });
        busy.delete(target);
      }
    },
  };
}

/** The faults of one phase (logged by the runner), then its quiet settle time. */
async function runPhase(
  phase: LabPhase,
  ctx: NemesisContext,
  signal: AbortSignal | undefined,
): Promise<void> {
  const endAt = performance.now() + phase.durationMs;
  if (phase.actions.length === 0) {
    const target = phase.grantTarget;
    if (target === undefined) await pause(phase.durationMs, signal);
    else {
      // Ends at its grant target (as the workers last said), bounded by its duration.
      const grants = (): number => ctx.workers.reduce((n, w) => n + w.grants, 0);
      const from = grants();
      while (performance.now() < endAt && grants() - from < target && !signal?.aborted) {
        await pause(250, signal);
      }
    }
  } else {
    let injected = 0;
    const target = phase.faultTarget ?? Infinity;
    const loop = async (): Promise<void> => {
      for (
        let n = 0;
        n < phase.maxFaults && performance.now() < endAt && injected < target && !signal?.aborted;
        n++
      ) {
        const action = phase.actions[Math.floor(ctx.random() * phase.actions.length)];
        const ran = await action.run(ctx);
        if (ran) injected += 1;
        const [min, max] = phase.gapMs;
        await pause(ran ? min + (max - min) * ctx.random() : 10, signal);
      }
    };
    await Promise.all(Array.from({ length: phase.parallel }, loop));
  }
  await pause(phase.settleMs, signal);
}
