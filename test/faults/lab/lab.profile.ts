import type { LabBackendEntry } from '../backends/lab-backend.registry';
import type { FaultFamily, ResourceMode } from '../history/history.event';
import type { NemesisAction } from '../nemesis/nemesis.action';
import {
  blockLoop,
  clockRate,
  clockStepBack,
  pauseHolder,
  proxyReset,
  proxySlow,
  proxyStall,
  serverKill,
  serverPause,
  topologyFault,
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
  /** A phase without faults ends once its workers made this many grants (or at `durationMs`). */
  readonly grantTarget?: number;
  /** The workload in this phase, where not the profile's. */
  readonly workload?: {
    readonly holdMs?: number;
    readonly writes?: number;
    readonly keys?: number;
  };
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

/**
 * The phases the backend can run: those whose fault families it supports (an unfenced control
 * only where there are tokens to compare), its own server phases in place of the generic one.
 */
function supported(backend: LabBackendEntry, phases: readonly LabPhase[]): LabPhase[] {
  return phases
    .filter((p) => p.families.every((f) => backend.families.includes(f)))
    .filter((p) => p.mode === 'fenced' || backend.fencing !== false)
    .flatMap((p) =>
      p.name === 'server' && backend.serverPhases
        ? backend.serverPhases.map((own) => ({
            ...p,
            name: own.phase,
            actions: own.faults.map(topologyFault),
            // Locks held across the fault, not only in the instant of a short critical section.
            workload: { holdMs: 300 },
          }))
        : [p],
    );
}

function clockActions(backend: LabBackendEntry): NemesisAction[] {
  const ramp = [backend.ttl * 2, backend.ttl * 3] as const;
  // Back by more than the gap between two grants' server times: the clock term of a token falls
  // below tokens already handed out, and only the counter keeps them going up.
  return [clockRate(2, ramp), clockRate(0.5, ramp), clockStepBack([2000, 10_000])];
}

function networkActions(backend: LabBackendEntry): NemesisAction[] {
  // Past the ttl, so a partitioned holder's lock does expire while others wait for it.
  const long = [backend.ttl * 2, backend.ttl * 4] as const;
  return [proxyStall(long), proxySlow([backend.ttl / 2, backend.ttl * 2], long), proxyReset()];
}

function serverActions(): NemesisAction[] {
  return [serverPause([500, 2500]), serverKill([200, 1500])];
}

/**
 * Holders hold longer in pause phases (well under the ttl, with two writes), so the nemesis
 * finds a holding worker at once instead of polling for one.
 */
const PAUSE_WORKLOAD = { holdMs: 40, keys: 10 } as const;

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
  phases: (backend) =>
    supported(backend, [
      phase({ name: 'no-faults', durationMs: 3000, settleMs: 0 }),
      phase({
        name: 'client-pause',
        families: ['client-pause'],
        // 108 pauses of holders as the nemesis sees them; the checker, which must count 100,
        // confirms each from the history (a holder may release in the instant before its SIGSTOP).
        // Four of the five workers at once at most: one always runs.
        faultTarget: 108,
        durationMs: backend.pauseMs[1] * 40,
        parallel: 4,
        gapMs: [50, 150],
        settleMs: 2000,
        actions: [pauseHolder()],
        workload: PAUSE_WORKLOAD,
      }),
      phase({
        name: 'client-block',
        families: ['client-pause'],
        faultTarget: 6,
        durationMs: backend.pauseMs[1] * 8,
        parallel: 3,
        gapMs: [50, 150],
        settleMs: 1500,
        actions: [blockLoop()],
        workload: PAUSE_WORKLOAD,
      }),
      // The control: the same faults against an unfenced resource must produce stale writes,
      // or the zero with fencing on proves nothing.
      phase({
        name: 'client-pause-unfenced',
        families: ['client-pause'],
        mode: 'unfenced',
        faultTarget: 8,
        durationMs: backend.pauseMs[1] * 8,
        parallel: 3,
        gapMs: [50, 150],
        settleMs: 1500,
        actions: [pauseHolder(), blockLoop()],
        // Five hot keys: a late write meets a newer one far more often than on ten.
        workload: { ...PAUSE_WORKLOAD, keys: 5 },
      }),
      phase({
        name: 'network',
        families: ['network'],
        durationMs: 5000,
        settleMs: 2000,
        actions: networkActions(backend),
      }),
      phase({
        name: 'server',
        families: ['server'],
        durationMs: 5000,
        settleMs: 2000,
        gapMs: [500, 1000],
        actions: serverActions(),
      }),
      phase({
        name: 'clock',
        families: ['clock'],
        durationMs: 5000,
        settleMs: 2000,
        gapMs: [200, 400],
        actions: clockActions(backend),
      }),
    ]),
};

/** `npm run test:faults`: longer phases, and the same pauses against an unfenced resource. */
export const LONG_PROFILE: LabProfile = {
  ...CI_PROFILE,
  name: 'long',
  phases: (backend) =>
    supported(backend, [
      // Throughput, not faults: no hold time and one write per grant, so it reaches its target
      // (each entry's longGrantTarget: 100,000 on memory and Redis, 20,000 on etcd) in minutes.
      phase({
        name: 'no-faults',
        durationMs: 1_200_000,
        grantTarget: backend.longGrantTarget,
        workload: { holdMs: 0, writes: 1 },
        settleMs: 0,
      }),
      phase({
        name: 'client-pause',
        families: ['client-pause'],
        durationMs: backend.pauseMs[1] * 120,
        parallel: 2,
        gapMs: [50, 150],
        actions: [pauseHolder()],
        workload: PAUSE_WORKLOAD,
      }),
      phase({
        name: 'client-block',
        families: ['client-pause'],
        durationMs: backend.pauseMs[1] * 30,
        parallel: 2,
        gapMs: [50, 150],
        actions: [blockLoop()],
        workload: PAUSE_WORKLOAD,
      }),
      phase({
        name: 'client-pause-unfenced',
        families: ['client-pause'],
        mode: 'unfenced',
        durationMs: backend.pauseMs[1] * 40,
        parallel: 2,
        gapMs: [50, 150],
        actions: [pauseHolder(), blockLoop()],
        workload: PAUSE_WORKLOAD,
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
      phase({
        name: 'clock',
        families: ['clock'],
        durationMs: 60_000,
        gapMs: [200, 600],
        actions: clockActions(backend),
      }),
      // Both at once: a server that loses its data (no persistence) while its clock is off. The
      // clock term of a token is then all that is left, and it may be behind earlier tokens.
      phase({
        name: 'clock-and-server',
        families: ['clock', 'server'],
        durationMs: 60_000,
        gapMs: [200, 800],
        actions: [...clockActions(backend), serverKill([200, 1500])],
      }),
    ]),
};

export const LAB_PROFILES: Readonly<Record<string, LabProfile>> = {
  ci: CI_PROFILE,
  long: LONG_PROFILE,
};
