import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labBackend } from './backends/lab-backend.registry';
import type { CheckReport, Violation } from './checker/history.checker';
import { CI_PROFILE } from './lab/lab.profile';
import { LabRun, runLab } from './lab/lab.runner';
import { summaryLine } from './lab/lab.verdict';

/**
 * The fault lab's CI-sized run, on a single Redis and a single etcd member: 5 worker processes
 * × 4 clients (real Nest application contexts on the built package), a fenced resource server,
 * and a nemesis that pauses holders (SIGSTOP past the ttl), stalls, slows and resets their
 * connections through the lab's proxies, and freezes and kill -9s the server. The whole history
 * is judged offline by the checker, which passes its own self-test (checker/*.spec.ts).
 */
const BUILT = join(__dirname, '..', '..', 'dist', 'index.js');

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

  beforeAll(async () => {
    if (!existsSync(BUILT)) throw new Error(`${BUILT} is missing: run \`npm run build\` first`);
    dir = mkdtempSync(join(tmpdir(), `ndl-faults-${name}-`));
    run = await runLab(labBackend(name), CI_PROFILE, dir);
    const t = run.report.total;
    process.stdout.write(
      `${summaryLine(run)} (${t.grants} grants, ${t.pausedHolderEvents} paused holders, ` +
        `${t.staleWritesRejected} stale writes refused, ${(run.durationMs / 1000).toFixed(0)} s)\n`,
    );
  }, 240_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

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
    for (const p of run.report.phases.filter((q) => q.phase !== 'server'))
      expect([p.phase, p.counts.grants > 10]).toEqual([p.phase, true]);
    expect(run.report.phases.map((p) => p.phase)).toEqual([
      'no-faults',
      'client-pause',
      'network',
      'server',
    ]);
  });

  it('accepted no stale write with fencing on, and fencing had stale writes to refuse', () => {
    const t = run.report.total;
    expect({ stale: t.staleWritesAccepted, examples: examples(run.report, 'stale-write') }).toEqual(
      {
        stale: 0,
        examples: [],
      },
    );
    // Paused holders did write late: the resource refused them, which is what fencing is for.
    expect(phase('client-pause').staleWritesRejected).toBeGreaterThan(0);
  });

  it('paused at least 100 holders past their ttl', () => {
    expect(phase('client-pause').pausedHolderEvents).toBeGreaterThanOrEqual(100);
  });

  it('never had two holders of a key at once without faults, nor under client pauses and network faults', () => {
    const phases = ['no-faults', 'client-pause', 'network'];
    expect(phases.map((p) => phase(p).overlaps)).toEqual([0, 0, 0]);
    expect(examples(run.report, 'overlap', phases)).toEqual([]);
  });

  it('under client pauses and network faults, every holder learned of its loss before another client was granted the lock', () => {
    const phases = ['client-pause', 'network'];
    expect({
      late: phases.map((p) => phase(p).lossAfterRegrant),
      examples: examples(run.report, 'loss-after-regrant', phases),
    }).toEqual({ late: [0, 0], examples: [] });
  });

  it('settled every acquire within its wait plus the backend bound, under every fault', () => {
    expect({ hung: run.report.total.hung, examples: examples(run.report, 'hung') }).toEqual({
      hung: 0,
      examples: [],
    });
  });

  it('never issued a fencing token below one granted before it was asked, and no release freed another holder', () => {
    expect(examples(run.report, 'token-regression')).toEqual([]);
    expect(examples(run.report, 'foreign-release')).toEqual([]);
  });
});
