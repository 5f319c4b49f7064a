import type { LabRun } from './lab.runner';

/**
 * Phases whose tokens may go backwards: a server without persistence killed while its clock was
 * off (its counter is lost, and the clock term alone is behind tokens issued before), and the
 * teardown right after one (the tokens issued before the loss are still ahead of the clock).
 */
export function counterLostPhases(run: LabRun): ReadonlySet<string> {
  const lost = new Set<string>();
  const phases = run.report.phases;
  phases.forEach((p, i) => {
    const both = (q: (typeof phases)[number] | undefined): boolean =>
      q !== undefined && q.families.includes('server') && q.families.includes('clock');
    if (both(p) || (p.phase === 'teardown' && both(phases[i - 1]))) lost.add(p.phase);
  });
  return lost;
}

/** The promises the lab checks, broken down to a list of what failed (empty: all kept). */
export function brokenPromises(run: LabRun): string[] {
  const broken: string[] = [];
  const t = run.report.total;
  if (t.staleWritesAccepted > 0)
    broken.push(`${t.staleWritesAccepted} stale writes accepted with fencing on`);
  if (t.hung > 0) broken.push(`${t.hung} acquires hung`);
  // A token can only go backwards where the server lost its counter and its clock is behind
  // tokens already issued: that phase measures it, every other must have none.
  const lost = counterLostPhases(run);
  const regressions = run.report.phases
    .filter((p) => !lost.has(p.phase))
    .reduce((n, p) => n + p.counts.tokenRegressions, 0);
  if (regressions > 0) broken.push(`${regressions} fencing-token regressions`);
  if (t.foreignReleases > 0) broken.push(`${t.foreignReleases} foreign releases`);
  for (const p of run.report.phases) {
    if (p.mode === 'unfenced' && p.counts.staleWritesAcceptedUnfenced === 0) {
      broken.push(`the unfenced control ${p.phase} found no stale write: its faults did not bite`);
    }
    // A server that loses its data (a restart without persistence, a failover to a replica
    // behind) may grant a lock twice, and a server clock running fast expires keys early: the
    // README says so with the lab's numbers; client pauses and network faults must not, nor
    // server faults where a kill -9 or SIGSTOP loses no acknowledged write (etcd's quorum, an AOF
    // written before each reply).
    if (p.families.includes('clock')) continue;
    if (p.families.includes('server') && !run.safeUnderServerFaults) continue;
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

/** The control figures beside the line: what fencing refused, what the unfenced control let in. */
export function controlLine(run: LabRun): string {
  const t = run.report.total;
  return (
    `${run.backend}: stale writes refused: ${t.staleWritesRejected}, ` +
    `stale writes accepted unfenced (control): ${t.staleWritesAcceptedUnfenced}, ` +
    `paused holders: ${t.pausedHolderEvents}, blocked holders: ${t.blockedHolderEvents}`
  );
}
