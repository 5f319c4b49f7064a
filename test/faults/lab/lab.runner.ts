import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { sleep } from '../../support/async.helpers';
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
  readonly report: CheckReport;
  readonly historyFiles: readonly string[];
  readonly durationMs: number;
  readonly workerOps: readonly (number | undefined)[];
  /** stderr of workers that printed any (crashes, unexpected logs). */
  readonly workerErrors: readonly string[];
}

/**
 * Runs the profile's workload against one backend, phase after phase of faults, then judges the
 * history. Everything it starts (servers, resource, proxies, workers) it stops, also on failure.
 */
export async function runLab(
  entry: LabBackendEntry,
  profile: LabProfile,
  outDir: string,
  seed = 1,
): Promise<LabRun> {
  mkdirSync(outDir, { recursive: true });
  const startedAt = performance.now();
  const phases = profile.phases(entry);
  const nemesisPath = join(outDir, 'nemesis.jsonl');
  const resourcePath = join(outDir, 'resource.jsonl');
  const workerPaths = Array.from({ length: profile.workers }, (_, i) =>
    join(outDir, `w${i}.jsonl`),
  );
  const nemesis = new HistoryWriter(nemesisPath);
  const totalMs = phases.reduce((ms, p) => ms + p.durationMs + p.settleMs + 5000, 0);
  let server: LabServer | undefined;
  let resource: ResourceProcess | undefined;
  const proxies: TcpProxy[] = [];
  const workers: WorkerProcess[] = [];
  let workerOps: (number | undefined)[] = [];
  const workerErrors: string[] = [];
  try {
    server = await entry.start();
    resource = await ResourceProcess.start(phases[0]?.mode ?? 'fenced', resourcePath);
    for (let i = 0; i < profile.workers; i++) {
      const proxy = new TcpProxy(server.port);
      await proxy.listen();
      proxies.push(proxy);
    }
    const keys = Array.from({ length: profile.keys }, (_, i) => `k${i}`);
    // allSettled: workers that did start are stopped below even when another one failed to.
    const started = await Promise.allSettled(
      workerPaths.map((historyPath, i) =>
        WorkerProcess.start({
          process: `w${i}`,
          clients: profile.clientsPerWorker,
          keys,
          multiKeyEvery: profile.multiKeyEvery,
          ttl: entry.ttl,
          wait: profile.wait,
          holdMs: profile.holdMs,
          writes: profile.writes,
          moduleOptions: {
            backend: entry.backend(proxies[i].port),
            keyPrefix: `lab:${entry.name}:`,
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
    });
    const ctx = context(entry, server, workers, proxies, nemesis, seededRandom(seed));
    for (const w of workers) w.go();
    for (const p of phases) await runPhase(p, ctx, nemesis, resource);
  } finally {
    for (const w of workers) w.thaw();
    server?.thaw();
    for (const p of proxies) p.setMode({ kind: 'pass' });
    const stopped = await Promise.all(workers.map((w) => w.stop(profile.wait + 15_000)));
    workerOps = stopped.map((s) => s.ops);
    for (const s of stopped) if (s.errors.trim() !== '') workerErrors.push(s.errors);
    await resource?.stop();
    for (const p of proxies) await p.close();
    await server?.stop();
    nemesis.close();
  }
  const historyFiles = [nemesisPath, resourcePath, ...workerPaths];
  const report = checkHistory(readHistory(historyFiles));
  return {
    backend: entry.name,
    profile: profile.name,
    report,
    historyFiles,
    durationMs: performance.now() - startedAt,
    workerOps,
    workerErrors,
  };
}

function context(
  backend: LabBackendEntry,
  server: LabServer,
  workers: readonly WorkerProcess[],
  proxies: readonly TcpProxy[],
  history: HistoryWriter,
  next: () => number,
): NemesisContext {
  const busy = new Set<string>();
  let faultId = 0;
  return {
    backend,
    server,
    workers,
    proxies,
    random: next,
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

async function runPhase(
  phase: LabPhase,
  ctx: NemesisContext,
  history: HistoryWriter,
  resource: ResourceProcess,
): Promise<void> {
  const base = {
    process: 'nemesis',
    phase: phase.name,
    families: phase.families,
    mode: phase.mode,
  };
  await resource.setMode(phase.mode);
  history.log({ ...base, t: labNow(), event: 'phase-start' });
  const endAt = performance.now() + phase.durationMs;
  if (phase.actions.length === 0) {
    await sleep(phase.durationMs);
  } else {
    let injected = 0;
    const target = phase.faultTarget ?? Infinity;
    const loop = async (): Promise<void> => {
      for (let n = 0; n < phase.maxFaults && performance.now() < endAt && injected < target; n++) {
        const action = phase.actions[Math.floor(ctx.random() * phase.actions.length)];
        const ran = await action.run(ctx);
        if (ran) injected += 1;
        const [min, max] = phase.gapMs;
        await sleep(ran ? min + (max - min) * ctx.random() : 10);
      }
    };
    await Promise.all(Array.from({ length: phase.parallel }, loop));
  }
  await sleep(phase.settleMs);
  history.log({ ...base, t: labNow(), event: 'phase-end' });
}
