import type { ContendedResult, Outcome } from '../report/results.types';
import { log } from '../support/run.log';
import { errorMessage, withTimeout } from '../support/time.util';

/** Runs one measurement under a watchdog; a failure becomes an error row, never a crash. */
export async function step<T>(
  label: string,
  adapter: string,
  boundMs: number,
  fn: () => Promise<T>,
): Promise<Outcome<T>> {
  try {
    return await withTimeout(fn(), boundMs, label);
  } catch (err) {
    log(`${adapter} ${label}: FAILED ${errorMessage(err)}`);
    return { adapter, error: `${label}: ${errorMessage(err)}` };
  }
}

/** Logs a contended run (in one process or across processes) that did not fail. */
export function logContended(id: string, label: string, row: Outcome<ContendedResult>): void {
  if ('error' in row) return;
  log(
    `${id} contended ${label}: ${row.grantsPerSec.toFixed(0)}/s, switches ${row.ownerSwitchPct.toFixed(0)}%, lost ${row.lostUpdates}`,
  );
}
