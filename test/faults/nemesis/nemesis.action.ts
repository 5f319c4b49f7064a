import type { LabBackendEntry, LabServer } from '../backends/lab-backend.registry';
import type { FaultFamily } from '../history/history.event';
import type { TcpProxy } from '../proxy/tcp.proxy';
import type { WorkerProcess } from '../workload/worker.process';

/** What a nemesis action may act on: only processes and proxies the lab itself started. */
export interface NemesisContext {
  readonly backend: LabBackendEntry;
  readonly server: LabServer;
  readonly workers: readonly WorkerProcess[];
  /** `proxies[i]` carries every connection of `workers[i]` to the server. */
  readonly proxies: readonly TcpProxy[];
  readonly random: () => number;
  /** Aborts when the run is cut short: long faults end early. */
  readonly signal?: AbortSignal;
  /**
   * Runs one fault on `target` (logged as fault-start / fault-end around `body`), unless another
   * fault holds that target: then resolves false without running it. Resolves false as well if
   * `body` resolves false (the fault did not do what it is for).
   */
  inject(
    action: NemesisAction,
    target: string,
    body: () => Promise<void | boolean>,
  ): Promise<boolean>;
  /** Whether a fault is running on `target` now. */
  isBusy(target: string): boolean;
}

/** One kind of fault. Pluggable: a phase lists the actions it draws from. */
export interface NemesisAction {
  readonly name: string;
  readonly family: FaultFamily;
  /** Injects one fault and resolves once it is over (the target healed). */
  run(ctx: NemesisContext): Promise<boolean>;
}
