import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labBackend } from './backends/lab-backend.registry';
import type { CheckReport, Violation } from './checker/history.checker';
import { CI_PROFILE } from './lab/lab.profile';
import { LabRun, runLab } from './lab/lab.runner';
import { controlLine, summaryLine } from './lab/lab.verdict';
import { stillRunning } from './runtime/lab.reaper';

/**
 * The fault lab's CI-sized run, on a single Redis and a single etcd member: 5 worker processes
 * × 4 clients (real Nest application contexts on the built package), a fenced resource server,
 * and a nemesis that pauses holders (SIGSTOP past the ttl), blocks a holder's event loop past
 * the ttl, runs the same pauses against an unfenced resource (the control), stalls, slows and
 * resets their connections through the lab's proxies, runs the Redis server's clock fast, slow
 * and steps it back, and freezes and kill -9s the server. The whole history is judged offline
 * by the checker, which passes its own self-test (checker/*.spec.ts).
 */
const BUILT = join(__dirname, '..', '..', 'dist', 'index.js');
/** The run's own budget, under the hook's timeout: past it the run is aborted and cleaned up. */
const RUN_BUDGET_MS = 200_000;

/** The violations of one kind, as an excerpt a failure message shows. */
function examples(
  report: CheckReport,
  kind: Violation['kind'],
  phases?: readonly string[],
): string[] {
  return report.violations
    .filter((v) => v.kind === kind && (!phases || phases.includes(v.phase)))
    .slice(0, 3)
    .map(
      (v) =>
        `${v.phase} ${v.fault ?? ''}: ${v.detail}\n${v.evidence.map((e) => JSON.stringify(e)).join('\n')}`,
    );
}

describe.each(['redis', 'etcd'])('fault lab, CI-sized run on %s', (name) => {
  let dir: string;
  let run: LabRun;
  const abort = new AbortController();
  let running: Promise<unknown> = Promise.resolve();

  beforeAll(async () => {
    if (!existsSync(BUILT)) throw new Error(`${BUILT} is missing: run \`npm run build\` first`);
    dir = mkdtempSync(join(tmpdir(), `ndl-faults-${name}-`));
    const budget = setTimeout(() => abort.abort(), RUN_BUDGET_MS);
    const started = runLab(labBackend(name), CI_PROFILE, dir, { signal: abort.signal });
    running = started.catch(() => undefined);
    try {
      run = await started;
    } finally {
      clearTimeout(budget);
    }
    const t = run.report.total;
    process.stdout.write(
      `${summaryLine(run)}\n${controlLine(run)}\n(${t.grants} grants, ` +
        `${(run.durationMs / 1000).toFixed(0)} s; clock phase overlaps: ` +
        `${run.report.phases.find((p) => p.phase === 'clock')?.counts.overlaps ?? 'n/a'}; phases: ` +
        `${run.report.phases.map((p) => `${p.phase} ${(p.durationMs / 1000).toFixed(1)} s`).join(', ')})\n`,
    );
  }, RUN_BUDGET_MS + 40_000);

  // Whatever happened above (a hook timeout included), the run is stopped and waited for here.
  afterAll(async () => {
    abort.abort();
    await running;
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  const phase = (phaseName: string) => {
    const found = run.report.phases.find((p) => p.phase === phaseName);
    if (!found) throw new Error(`no phase ${phaseName} in the history`);
    return found.counts;
  };

  it('ran the workload in every phase, with every worker to the end', () => {
    expect(run.workerOps.every((ops) => typeof ops === 'number' && ops > 0)).toBe(true);
    expect(run.workerErrors).toEqual([]);
    // Server faults cost etcd seconds of availability each (its client backs off after repeated
    // failures), and the CI phase is 8 s: grants there are not required (the long run counts
    // them and its recovery times); the other phases must keep granting.
    // Teardown only finishes the operations in flight.
    for (const p of run.report.phases.filter((q) => !['server', 'teardown'].includes(q.phase)))
      expect([p.phase, p.counts.grants > 10]).toEqual([p.phase, true]);
    expect(run.report.phases.map((p) => p.phase)).toEqual([
      'no-faults',
      'client-pause',
      'client-block',
      'client-pause-unfenced',
      'network',
      'server',
      ...(name === 'redis' ? ['clock'] : []),
      'teardown',
    ]);
  });

  it('stopped every process it started (servers, resource, workers)', () => {
    expect(stillRunning()).toEqual([]);
  });

  it('accepted no stale write with fencing on, and fencing had stale writes to refuse', () => {
    const t = run.report.total;
    expect({ stale: t.staleWritesAccepted, examples: examples(run.report, 'stale-write') }).toEqual(
      {
        stale: 0,
        examples: [],
      },
    );
    // Paused and blocked holders did write late: the resource refused them, which is what
    // fencing is for.
    expect(phase('client-pause').staleWritesRejected).toBeGreaterThan(0);
    expect(phase('client-block').staleWritesRejected).toBeGreaterThan(0);
  });

  it('the unfenced control, under the same faults, did accept stale writes (the faults bite)', () => {
    expect(phase('client-pause-unfenced').staleWritesAcceptedUnfenced).toBeGreaterThan(0);
    expect(phase('client-pause-unfenced').staleWritesAccepted).toBe(0);
  });

  it('paused at least 100 holders for longer than their lock can outlive (ttl, and etcd lease)', () => {
    expect(phase('client-pause').pausedHolderEvents).toBeGreaterThanOrEqual(100);
  });

  it('blocked holders event loops past the ttl; the lock went to others meanwhile', () => {
    expect(phase('client-block').blockedHolderEvents).toBeGreaterThanOrEqual(5);
    expect(phase('client-block').blockedHoldersRegranted).toBeGreaterThan(0);
  });

  const safe = ['no-faults', 'client-pause', 'client-block', 'network', 'teardown'];

  it('never had two holders of a key at once without faults, under client pauses and blocks, network faults, nor in teardown', () => {
    expect(safe.map((p) => phase(p).overlaps)).toEqual(safe.map(() => 0));
    expect(examples(run.report, 'overlap', safe)).toEqual([]);
  });

  it('under client pauses and blocks and network faults, every holder learned of its loss before another client was granted the lock', () => {
    expect({
      late: safe.map((p) => phase(p).lossAfterRegrant),
      examples: examples(run.report, 'loss-after-regrant', safe),
    }).toEqual({ late: safe.map(() => 0), examples: [] });
  });

  it('settled every acquire within its wait plus the backend bound, under every fault', () => {
    expect({ hung: run.report.total.hung, examples: examples(run.report, 'hung') }).toEqual({
      hung: 0,
      examples: [],
    });
  });

  if (name === 'redis') {
    it('with the server clock fast, slow and stepped back, kept granting, tokens only went up and no stale write got in', () => {
      expect(phase('clock').grants).toBeGreaterThan(10);
      expect(phase('clock').faults).toBeGreaterThan(3);
      expect(phase('clock').tokenRegressions).toBe(0);
      expect(phase('clock').staleWritesAccepted).toBe(0);
    });
  }

  it('never issued a fencing token below one granted before it was asked, and no release freed another holder', () => {
    expect(examples(run.report, 'token-regression')).toEqual([]);
    expect(examples(run.report, 'foreign-release')).toEqual([]);
  });
});
