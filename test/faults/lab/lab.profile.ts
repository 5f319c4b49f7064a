import type { LabBackendEntry } from '../backends/lab-backend.registry';
import type { FaultFamily, ResourceMode } from '../history/history.event';
import type { NemesisAction } from '../nemesis/nemesis.action';
import {
  pauseHolder,
  proxyReset,
  proxySlow,
  proxyStall,
  serverKill,
  serverPause,
} from '../nemesis/nemesis.actions';

/** A stretch of a run with one family of faults (or none) and one resource mode. */
export interface LabPhase {
  readonly name: string;
  readonly families: readonly FaultFamily[];
  readonly mode: ResourceMode;
  /** How long the nemesis injects faults, ms. */
  readonly durationMs: number;
  /** Faults running at once (each on its own target). */
  readonly parallel: number;
  /** Pause between two faults of one nemesis loop, ms. */
  readonly gapMs: readonly [number, number];
  readonly actions: readonly NemesisAction[];
  /** Bound of faults per nemesis loop. */
  readonly maxFaults: number;
  /** The phase ends once this many faults ran (across loops), or at `durationMs`. */
  readonly faultTarget?: number;
  /** Quiet time after the last fault, still in the phase: its effects are judged in it. */
  readonly settleMs: number;
}

/** The workload and the phases of one kind of run. */
export interface LabProfile {
  readonly name: string;
  readonly workers: number;
  readonly clientsPerWorker: number;
  readonly keys: number;
  readonly multiKeyEvery: number;
  readonly wait: number;
  readonly holdMs: number;
  readonly writes: number;
  phases(backend: LabBackendEntry): LabPhase[];
}

function phase(p: Partial<LabPhase> & Pick<LabPhase, 'name' | 'durationMs'>): LabPhase {
  return {
    families: [],
    mode: 'fenced',
    parallel: 1,
    gapMs: [100, 300],
    actions: [],
    maxFaults: 1000,
    settleMs: 2500,
    ...p,
  };
}

function networkActions(backend: LabBackendEntry): NemesisAction[] {
  // Past the ttl, so a partitioned holder's lock does expire while others wait for it.
  const long = [backend.ttl * 2, backend.ttl * 4] as const;
  return [proxyStall(long), proxySlow([backend.ttl / 2, backend.ttl * 2], long), proxyReset()];
}

function serverActions(): NemesisAction[] {
  return [serverPause([500, 2500]), serverKill([200, 1500])];
}

/** What `npm test` runs: about a minute per backend on two shared cores. */
export const CI_PROFILE: LabProfile = {
  name: 'ci',
  workers: 5,
  clientsPerWorker: 4,
  keys: 5,
  multiKeyEvery: 4,
  wait: 2000,
  holdMs: 3,
  writes: 2,
  phases: (backend) => [
    phase({ name: 'no-faults', durationMs: 6000, settleMs: 0 }),
    phase({
      name: 'client-pause',
      families: ['client-pause'],
      // 120 pauses of holders as the nemesis sees them; the checker, which must count 100, confirms
      // each from the history (a holder may release in the instant before its SIGSTOP).
      faultTarget: 120,
      durationMs: backend.pauseMs[1] * 50,
      parallel: 3,
      gapMs: [50, 150],
      actions: [pauseHolder()],
    }),
    phase({
      name: 'network',
      families: ['network'],
      durationMs: 8000,
      actions: networkActions(backend),
    }),
    phase({
      name: 'server',
      families: ['server'],
      durationMs: 8000,
      gapMs: [500, 1000],
      actions: serverActions(),
    }),
  ],
};

/** `npm run test:faults`: longer phases, and the same pauses against an unfenced resource. */
export const LONG_PROFILE: LabProfile = {
  ...CI_PROFILE,
  name: 'long',
  phases: (backend) => [
    phase({ name: 'no-faults', durationMs: 60_000, settleMs: 0 }),
    phase({
      name: 'client-pause',
      families: ['client-pause'],
      durationMs: backend.pauseMs[1] * 150,
      parallel: 2,
      gapMs: [50, 150],
      actions: [pauseHolder()],
    }),
    phase({
      name: 'client-pause-unfenced',
      families: ['client-pause'],
      mode: 'unfenced',
      durationMs: backend.pauseMs[1] * 40,
      parallel: 2,
      gapMs: [50, 150],
      actions: [pauseHolder()],
    }),
    phase({
      name: 'network',
      families: ['network'],
      durationMs: 60_000,
      actions: networkActions(backend),
    }),
    phase({
      name: 'server',
      families: ['server'],
      durationMs: 60_000,
      gapMs: [500, 1500],
      actions: serverActions(),
    }),
  ],
};

export const LAB_PROFILES: Readonly<Record<string, LabProfile>> = {
  ci: CI_PROFILE,
  long: LONG_PROFILE,
};
