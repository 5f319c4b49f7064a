import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labBackend } from '../backends/lab-backend.registry';
import { stillRunning } from '../runtime/lab.reaper';
import { CI_PROFILE, LabProfile } from './lab.profile';
import { runLab } from './lab.runner';

/** One long fault-free phase: a run that would go on for a minute unless it is cut short. */
const LONG_QUIET: LabProfile = {
  ...CI_PROFILE,
  phases: () => [
    {
      name: 'no-faults',
      families: [],
      mode: 'fenced',
      durationMs: 60_000,
      parallel: 1,
      gapMs: [0, 0],
      actions: [],
      maxFaults: 0,
      settleMs: 0,
    },
  ],
};

describe('fault lab runner', () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ndl-faults-runner-'));
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('aborted mid-run, stops every process it started and rejects, long before its phases end', async () => {
    const abort = new AbortController();
    const startedAt = performance.now();
    const run = runLab(labBackend('memory'), LONG_QUIET, dir, { signal: abort.signal });
    const outcome = run.then(
      () => 'finished',
      (err: unknown) => String(err),
    );
    // Running: its worker and resource processes are up.
    for (let i = 0; i < 300 && stillRunning().length < 2; i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(stillRunning().length).toBeGreaterThanOrEqual(2);
    abort.abort();

    expect(await outcome).toContain('aborted');
    expect(stillRunning()).toEqual([]);
    // The phase alone would have taken 60 s.
    expect(performance.now() - startedAt).toBeLessThan(45_000);
  }, 60_000);
});
