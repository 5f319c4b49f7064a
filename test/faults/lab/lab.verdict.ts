import type { LabRun } from './lab.runner';

/** The promises the lab checks, broken down to a list of what failed (empty: all kept). */
export function brokenPromises(run: LabRun): string[] {
  const broken: string[] = [];
  const t = run.report.total;
  if (t.staleWritesAccepted > 0)
    broken.push(`${t.staleWritesAccepted} stale writes accepted with fencing on`);
  if (t.hung > 0) broken.push(`${t.hung} acquires hung`);
  if (t.tokenRegressions > 0) broken.push(`${t.tokenRegressions} fencing-token regressions`);
  if (t.foreignReleases > 0) broken.push(`${t.foreignReleases} foreign releases`);
  for (const p of run.report.phases) {
    // A server that loses its data (a restart without persistence) may grant a lock twice: the
    // README says so; client pauses and network faults must not.
    if (p.families.includes('server')) continue;
    if (p.counts.overlaps > 0) broken.push(`${p.counts.overlaps} overlaps in phase ${p.phase}`);
    if (p.counts.lossAfterRegrant > 0) {
      broken.push(
        `${p.counts.lossAfterRegrant} losses learned after a regrant in phase ${p.phase}`,
      );
    }
  }
  return broken;
}

/** The line a script reads, one per backend. */
export function summaryLine(run: LabRun): string {
  const t = run.report.total;
  return (
    `${run.backend}: stale writes accepted: ${t.staleWritesAccepted}, overlaps: ${t.overlaps}, ` +
    `loss after regrant: ${t.lossAfterRegrant}, hung: ${t.hung}`
  );
}
