import type { CheckCounts } from '../checker/history.checker';
import type { LabRun } from './lab.runner';
import { counterLostPhases } from './lab.verdict';

/** Sums one figure over the phases a predicate picks. */
function sum(
  run: LabRun,
  field: keyof CheckCounts,
  pick: (phase: string, fams: readonly string[]) => boolean,
): number {
  return run.report.phases
    .filter((p) => pick(p.phase, p.families))
    .reduce((n, p) => n + p.counts[field], 0);
}

/**
 * The phases in which the backend promises mutual exclusion: all but clock faults, and server
 * faults only where no acknowledged write is lost (see `safeUnderServerFaults`).
 */
function promised(run: LabRun): (phase: string, fams: readonly string[]) => boolean {
  return (_, fams) =>
    !fams.includes('clock') && (!fams.includes('server') || run.safeUnderServerFaults);
}

/** Per backend, what it cannot promise and the lab's numbers for it. */
function limits(run: LabRun): string[] {
  const out: string[] = [];
  for (const p of run.report.phases) {
    const c = p.counts;
    if (promised(run)(p.phase, p.families) && !counterLostPhases(run).has(p.phase)) continue;
    const tokens = run.fencing
      ? `${c.tokenRegressions} token regressions, ${c.staleWritesAccepted} stale writes accepted, ` +
        `${c.staleWritesRejected} writes refused by fencing`
      : 'no fencing tokens';
    out.push(
      `\`${run.backend}\`, ${p.phase} (${c.faults} faults, ${c.grants} grants): ` +
        `${c.overlaps} overlaps, ${c.lossAfterRegrant} losses learned after a regrant, ${tokens}`,
    );
  }
  return out;
}

/**
 * The README's "Guarantees under faults" section, built from one `npm run test:faults` run:
 * one row per backend and topology, then, per topology and fault that cannot promise safety,
 * how often the lab saw it violated.
 */
export function readmeSection(runs: readonly LabRun[], command: string): string {
  const out: string[] = [
    '## Guarantees under faults',
    '',
    'Measured by the fault lab (`test/faults/`, issue 13): worker processes, each a Nest ' +
      'application context with this package, contend for a handful of keys (single and ' +
      'multi-key) and write, inside each critical section, to a resource server of the lab that ' +
      'records every write with its fencing token; a nemesis injects real faults (SIGSTOP of a ' +
      'holder past its lock, a busy loop blocking a holder past its ttl, stalled, slowed and reset ' +
      'connections through a TCP proxy, a Redis server clock run fast, slow and stepped back ' +
      'through an LD_PRELOAD clock shim, SIGSTOP and kill -9 of the server with and without ' +
      'persistence, Sentinel failovers, Redis Cluster primaries failed over by hand (also to ' +
      'replicas whose clock is behind), frozen or killed until their replica took over, the ' +
      'leader of a 3-member etcd cluster killed or ' +
      'frozen, Redlock masters restarted empty); an offline checker judges the recorded history (it ' +
      'passes a self-test with planted violations first). Figures of `' +
      command +
      '` on a shared 2-core machine, one run per backend, all judged by the same checker ' +
      '(`--rejudge` judges recorded histories again); `test/faults/results/summary.md` has every ' +
      'phase.',
    '',
    '| backend / topology | grants | fault-free grants | faults | paused holders¹ | blocked event loops¹ | stale writes accepted, fenced | stale writes refused by fencing⁴ | unfenced control: stale writes accepted² | overlaps³ | loss after regrant³ | token regressions⁴ | hung |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const run of runs) {
    const t = run.report.total;
    const noFaults = run.report.phases.find((p) => p.phase === 'no-faults')?.counts.grants ?? 0;
    const lost = counterLostPhases(run);
    const kept = (phase: string): boolean => !lost.has(phase);
    out.push(
      `| \`${run.backend}\` | ${t.grants} | ${noFaults} | ${t.faults} | ${t.pausedHolderEvents} | ` +
        `${t.blockedHolderEvents} | ${run.fencing ? t.staleWritesAccepted : 'no tokens'} | ` +
        `${sum(run, 'staleWritesRejected', kept)} | ` +
        `${t.staleWritesAcceptedUnfenced} | ${sum(run, 'overlaps', promised(run))} | ` +
        `${sum(run, 'lossAfterRegrant', promised(run))} | ` +
        `${run.fencing ? sum(run, 'tokenRegressions', kept) : 'no tokens'} | ${t.hung} |`,
    );
  }
  out.push(
    '',
    '¹ Only pauses longer than what keeps the lock alive count (the ttl, 400 ms; on etcd the ' +
      'session lease, 1 s, too); a blocked event loop is a busy loop of the worker, right after ' +
      'a grant and before its first write.',
    '² The same pauses and blocks against a resource that accepts every write: stale writes ' +
      'that fencing would have refused. The faults bite; fencing is what stops them.',
    '³ In the phases without server or clock faults (no faults, paused and blocked holders, ' +
      'network faults, teardown), and under server faults too where the server loses no ' +
      'acknowledged write to a kill -9 or SIGSTOP (`etcd`, `etcd-cluster`, `redis-aof`: AOF written ' +
      'before each reply; a power loss is not tested): ' +
      'every holder learned of its loss (its deadline passed or its signal aborted) before ' +
      'another client was granted the lock.',
    '⁴ Where the server kept its counter: every phase but `clock-and-server` (and the teardown ' +
      'after it), which the next section reports.',
    '',
    '### Where a topology cannot promise safety',
    '',
    'A server that loses a grant (Redis restarted without persistence, a Sentinel or Cluster ' +
      'failover to a replica that had not received it, a frozen Cluster primary that, thawed, ' +
      'grants a lock before it learns that its replica replaced it, a majority of Redlock ' +
      'masters restarted empty) or whose ' +
      'clock runs fast (keys expire early) can grant a lock twice; no client-side logic can see ' +
      'it. Fencing tokens still only go up where the counter survived, so a fenced store refuses ' +
      "the older holder's writes; where the counter is lost (no persistence) while the server " +
      'clock is behind tokens it issued, the clock term is all that is left and tokens can go ' +
      'backwards (phase clock-and-server): a fenced store then refuses the writes of the ' +
      'current holders until the clock passes the old tokens (safe, not live), an unfenced one ' +
      'has no protection. Redlock issues no fencing tokens at all. What the lab ' +
      'measured under those faults:',
    '',
  );
  for (const run of runs) for (const line of limits(run)) out.push(`- ${line}.`);
  out.push('');
  return out.join('\n');
}
