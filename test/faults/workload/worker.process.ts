import { join } from 'node:path';
import { LabChildProcess } from '../runtime/lab-child.process';
import type { WorkerConfig } from './workload.config';

/** A worker process as the lab drives it: started, told to go, frozen and thawed, stopped. */
export class WorkerProcess {
  private frozen = false;
  private holdingNow = false;

  private constructor(
    readonly config: WorkerConfig,
    readonly child: LabChildProcess,
  ) {
    child.onLine((line) => {
      if (line.event === 'status') this.holdingNow = line.holding === true;
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
