/**
 * `npm run test:faults`: the long fault lab, backend after backend, then a summary (markdown and
 * JSON) and one line per backend a script can read. Exits 1 if a promise was broken.
 *
 *   --backends redis,etcd   (default: redis,etcd; see LAB_BACKENDS)
 *   --profile long|ci       (default: long)
 *   --out <dir>             (default: test/faults/results)
 *   --seed <n>
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { labBackend } from '../backends/lab-backend.registry';
import { LAB_PROFILES } from './lab.profile';
import { LabRun, runLab } from './lab.runner';
import { writeSummary } from './lab.summary';
import { brokenPromises, summaryLine } from './lab.verdict';

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

async function main(): Promise<void> {
  const backends = option('backends', 'redis,etcd').split(',');
  const profile = LAB_PROFILES[option('profile', 'long')];
  if (!profile) throw new Error(`unknown profile; known: ${Object.keys(LAB_PROFILES).join(', ')}`);
  const out = option('out', join(__dirname, '..', 'results'));
  const seed = Number(option('seed', '1'));
  const runs: LabRun[] = [];
  for (const name of backends) {
    const entry = labBackend(name);
    const dir = join(out, 'histories', name);
    rmSync(dir, { recursive: true, force: true });
    process.stdout.write(`fault lab: ${name}, profile ${profile.name}…\n`);
    const run = await runLab(entry, profile, dir, seed);
    runs.push(run);
    process.stdout.write(
      `  ${run.report.total.grants} grants in ${(run.durationMs / 1000).toFixed(0)} s\n`,
    );
  }
  const files = await writeSummary(runs, out);
  process.stdout.write(`summary: ${files.markdown}, ${files.json}\n`);
  const broken = runs.flatMap((r) => brokenPromises(r).map((b) => `${r.backend}: ${b}`));
  for (const b of broken) process.stdout.write(`BROKEN ${b}\n`);
  for (const run of runs) process.stdout.write(`${summaryLine(run)}\n`);
  process.exitCode = broken.length > 0 ? 1 : 0;
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 2;
});
