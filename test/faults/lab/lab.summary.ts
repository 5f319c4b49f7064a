import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { format, resolveConfig } from 'prettier';
import type { CheckCounts } from '../checker/history.checker';
import type { LabRun } from './lab.runner';
import { readmeSection } from './lab.readme';
import { brokenPromises, controlLine, summaryLine } from './lab.verdict';

const COLUMNS: readonly (readonly [keyof CheckCounts, string])[] = [
  ['grants', 'grants'],
  ['faults', 'faults'],
  ['pausedHolderEvents', 'paused holders (longer than the ttl / lease)'],
  ['blockedHolderEvents', 'blocked event loops of holders'],
  ['blockedHoldersRegranted', 'of those, lock granted to another meanwhile'],
  ['deadOnArrival', 'grants expired on arrival'],
  ['overlaps', 'overlaps'],
  ['signalOverlaps', 'overlaps by signal alone'],
  ['staleWritesAccepted', 'stale writes accepted (fenced)'],
  ['staleWritesAcceptedUnfenced', 'stale writes accepted (unfenced)'],
  ['staleWritesRejected', 'stale writes refused'],
  ['supersededWritesAccepted', 'writes after a newer grant, before its first write'],
  ['tokenRegressions', 'token regressions'],
  ['foreignReleases', 'foreign releases'],
  ['lossAfterRegrant', 'loss after regrant'],
  ['signalAfterRegrant', 'signal after regrant, deadline before'],
  ['hung', 'hung'],
];

function markdown(runs: readonly LabRun[]): string {
  const out: string[] = ['# Fault lab summary', ''];
  for (const run of runs) {
    out.push(
      `## ${run.backend} (profile ${run.profile}, ${(run.durationMs / 1000).toFixed(0)} s)`,
      '',
    );
    const rows = [
      ...run.report.phases.map((p) => ({
        name: `${p.phase} (${(p.durationMs / 1000).toFixed(0)} s${p.mode === 'unfenced' ? ', unfenced' : ''})`,
        counts: p.counts,
      })),
      { name: '**total**', counts: run.report.total },
    ];
    out.push(`| figure | ${rows.map((r) => r.name).join(' | ')} |`);
    out.push(`| --- | ${rows.map(() => '---:').join(' | ')} |`);
    for (const [field, label] of COLUMNS) {
      out.push(`| ${label} | ${rows.map((r) => r.counts[field]).join(' | ')} |`);
    }
    out.push(
      '',
      '| fault | family | count | recovered | recovery p50 ms | recovery max ms |',
      '| --- | --- | ---: | ---: | ---: | ---: |',
    );
    for (const r of run.report.recovery) {
      out.push(
        `| ${r.action} | ${r.family} | ${r.faults} | ${r.recovered} | ${r.p50Ms.toFixed(0)} | ${r.maxMs.toFixed(0)} |`,
      );
    }
    const broken = brokenPromises(run);
    out.push(
      '',
      broken.length === 0 ? 'Every promise checked held.' : `Broken: ${broken.join('; ')}.`,
      '',
    );
    const shown = run.report.violations.filter((v) => v.kind !== 'stale-write-unfenced');
    for (const v of shown.slice(0, 5)) {
      out.push(
        `- ${v.kind} on ${v.key} in ${v.phase}${v.fault ? ` (${v.fault})` : ''}: ${v.detail}`,
      );
    }
    out.push('');
  }
  out.push('```', ...runs.map(controlLine), '```', '');
  out.push('```', ...runs.map(summaryLine), '```', '');
  return out.join('\n');
}

/**
 * Writes summary.md and summary.json (violations capped: the histories hold the rest), formatted
 * the way the repository's Prettier check wants them.
 */
export async function writeSummary(
  runs: readonly LabRun[],
  dir: string,
  command = 'npm run test:faults',
): Promise<{ markdown: string; json: string; readme: string }> {
  mkdirSync(dir, { recursive: true });
  const md = join(dir, 'summary.md');
  const json = join(dir, 'summary.json');
  const options = (await resolveConfig(md)) ?? {};
  const data = runs.map((r) => ({
    ...r,
    report: { ...r.report, violations: r.report.violations.slice(0, 50) },
    violationCount: r.report.violations.length,
    broken: brokenPromises(r),
  }));
  const readme = join(dir, 'readme-section.md');
  writeFileSync(md, await format(markdown(runs), { ...options, filepath: md }));
  // The lines a script reads come last in the JSON too.
  const document = { runs: data, control: runs.map(controlLine), lines: runs.map(summaryLine) };
  writeFileSync(json, await format(JSON.stringify(document), { ...options, filepath: json }));
  writeFileSync(
    readme,
    await format(readmeSection(runs, command), { ...options, filepath: readme }),
  );
  return { markdown: md, json, readme };
}
