import { join } from 'node:path';
import { LabChildProcess } from '../runtime/lab-child.process';
import type { WorkerConfig } from './workload.config';

/** A worker process as the lab drives it: started, told to go, frozen and thawed, stopped. */
export class WorkerProcess {
  private frozen = false;
  private holdingNow = false;
  private grantsSoFar = 0;
  private readonly blockWaiters: ((ms: number) => void)[] = [];

  private constructor(
    readonly config: WorkerConfig,
    readonly child: LabChildProcess,
  ) {
    child.onLine((line) => {
      if (line.event === 'status') this.holdingNow = line.holding === true;
      else if (line.event === 'progress') this.grantsSoFar = Number(line.grants);
      else if (line.event === 'blocked') this.blockWaiters.shift()?.(Number(line.ms));
    });
  }

  /** Whether one of its clients held a lock when it last said (a frozen worker says nothing). */
  get holding(): boolean {
    return this.holdingNow;
  }

  /** Spawns the worker and waits (bounded) until its application context is up. */
  static async start(config: WorkerConfig): Promise<WorkerProcess> {
    const child = LabChildProcess.start(config.process, join(__dirname, 'lab.worker.ts'), config);
    try {
      await child.next('ready', 30_000);
    } catch (err) {
      await child.stop(1000);
      throw err;
    }
    return new WorkerProcess(config, child);
  }

  /** Grants of its clients so far, as it last said (every half second). */
  get grants(): number {
    return this.grantsSoFar;
  }

  /**
   * Has the next client granted a lock block the event loop for `ms` before its first write;
   * resolves true once it did, false if no grant came within `withinMs`.
   */
  async block(ms: number, withinMs: number): Promise<boolean> {
    let resolveBlocked: (ms: number) => void = () => undefined;
    const blocked = new Promise<number>((resolve) => (resolveBlocked = resolve));
    this.blockWaiters.push(resolveBlocked);
    this.child.send({ op: 'block', ms });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), ms + withinMs);
    });
    const result = await Promise.race([blocked, timedOut]);
    clearTimeout(timer);
    if (result !== 'timeout') return true;
    // Cancelled, so a late grant does not block outside the fault's window.
    this.child.send({ op: 'block', ms: 0 });
    const i = this.blockWaiters.indexOf(resolveBlocked);
    if (i >= 0) this.blockWaiters.splice(i, 1);
    return false;
  }

  /** Changes the workload of its clients from their next operation on. */
  tune(workload: { holdMs?: number; writes?: number; keys?: number }): void {
    this.child.send({ op: 'tune', ...workload });
  }

  get name(): string {
    return this.config.process;
  }

  go(): void {
    this.child.send({ op: 'go' });
  }

  /** SIGSTOP: the whole process freezes, timers and sockets included (a GC pause, a swap-out). */
  freeze(): void {
    // Never a signal to a PID whose process exited (the number may belong to another by now).
    if (!this.alive) return;
    process.kill(this.child.pid, 'SIGSTOP');
    this.frozen = true;
  }

  thaw(): void {
    if (!this.frozen) return;
    this.frozen = false;
    if (this.alive) process.kill(this.child.pid, 'SIGCONT');
  }

  private get alive(): boolean {
    return this.child.child.exitCode === null && this.child.child.signalCode === null;
  }

  /** Lets the clients finish their operation and the app close; kills it after `ms`. */
  async stop(ms: number): Promise<{ ops: number | undefined; errors: string }> {
    this.thaw();
    const done = this.child.next('done', ms).then(
      (line) => line.ops as number,
      () => undefined,
    );
    await this.child.stop(ms);
    return { ops: await done, errors: this.child.errors };
  }
}
