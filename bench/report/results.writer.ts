import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { elapsedSeconds, log } from '../support/run.log';
import { renderJson } from './json.report';
import { renderFaultsMarkdown, renderMarkdown } from './markdown.report';
import type { FaultReport } from './results.builder';
import type { BenchResults } from './results.types';
import { computeFaultTargets, computeTargets } from './targets.report';

/** Writes through a temporary file, so that a reader never sees half a report. */
function writeAtomically(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/** latest.json and latest.md in `outDir`, with the targets; the markdown also to stdout. */
export function writeBenchReport(outDir: string, results: BenchResults): void {
  const targets = computeTargets(results);
  const markdown = renderMarkdown(results, targets);
  mkdirSync(outDir, { recursive: true });
  writeAtomically(join(outDir, 'latest.json'), renderJson({ ...results, targets }));
  writeAtomically(join(outDir, 'latest.md'), markdown);
  process.stdout.write(markdown);
  log(`wrote ${join(outDir, 'latest.md')} and latest.json in ${elapsedSeconds().toFixed(0)} s`);
}

/** faults.json and faults.md in `outDir` (never latest.*); the markdown also to stdout. */
export function writeFaultReport(outDir: string, results: FaultReport): void {
  const targets = computeFaultTargets(results);
  const markdown = renderFaultsMarkdown(results, targets);
  mkdirSync(outDir, { recursive: true });
  writeAtomically(join(outDir, 'faults.json'), renderJson({ ...results, targets }));
  writeAtomically(join(outDir, 'faults.md'), markdown);
  process.stdout.write(markdown);
  log(`wrote ${join(outDir, 'faults.md')} and faults.json`);
}
