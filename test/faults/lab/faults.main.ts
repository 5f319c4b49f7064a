/**
 * `npm run test:faults`: the long fault lab, backend after backend, then a summary (markdown and
 * JSON) and one line per backend a script can read. Exits 1 if a promise was broken.
 *
 *   --backends redis,etcd   (default: memory,redis,redis-aof,etcd,etcd-cluster,redis-sentinel,redis-cluster,redlock; see LAB_BACKENDS)
 *   --profile long|ci       (default: long)
 *   --out <dir>             (default: test/faults/results)
 *   --seed <n>
 *   --rejudge               (runs nothing: judges the histories under <out>/histories again and
 *                            rewrites the summary, with the checker and summary as they are now)
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { labBackend } from '../backends/lab-backend.registry';
import { LAB_PROFILES } from './lab.profile';
import { LabRun, rejudgeRun, runLab } from './lab.runner';
import { writeSummary } from './lab.summary';
import { brokenPromises, controlLine, summaryLine } from './lab.verdict';

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

async function main(): Promise<void> {
  const backends = option(
    'backends',
    'memory,redis,redis-aof,etcd,etcd-cluster,redis-sentinel,redis-cluster,redlock',
  ).split(',');
  const profile = LAB_PROFILES[option('profile', 'long')];
  if (!profile) throw new Error(`unknown profile; known: ${Object.keys(LAB_PROFILES).join(', ')}`);
  const out = option('out', join(__dirname, '..', 'results'));
  const seed = Number(option('seed', '1'));
  const rejudge = process.argv.includes('--rejudge');
  const runs: LabRun[] = [];
  const failed: string[] = [];
  for (const name of backends) {
    const entry = labBackend(name);
    const dir = join(out, 'histories', name);
    if (!rejudge) rmSync(dir, { recursive: true, force: true });
    process.stdout.write(`fault lab: ${name}, profile ${profile.name}…\n`);
    let run: LabRun;
    try {
      run = rejudge
        ? rejudgeRun(entry, profile.name, dir)
        : await runLab(entry, profile, dir, { seed });
    } catch (err) {
      // One topology that could not run does not cost the others' figures.
      const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
      failed.push(`${name}: ${message}`);
      process.stdout.write(`  FAILED TO RUN ${name}: ${message}\n`);
      continue;
    }
    runs.push(run);
    process.stdout.write(
      `  ${run.report.total.grants} grants in ${(run.durationMs / 1000).toFixed(0)} s\n`,
    );
  }
  const files = await writeSummary(runs, out);
  process.stdout.write(`summary: ${files.markdown}, ${files.json}, ${files.readme}\n`);
  const broken = runs.flatMap((r) => brokenPromises(r).map((b) => `${r.backend}: ${b}`));
  for (const b of broken) process.stdout.write(`BROKEN ${b}\n`);
  for (const run of runs) process.stdout.write(`${controlLine(run)}\n`);
  for (const run of runs) process.stdout.write(`${summaryLine(run)}\n`);
  for (const f of failed) process.stdout.write(`NOT RUN ${f.split('\n')[0]}\n`);
  process.exitCode = failed.length > 0 ? 2 : broken.length > 0 ? 1 : 0;
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 2;
});
