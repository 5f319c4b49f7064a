import type { ChildProcess } from 'node:child_process';

/**
 * Every process the lab started (servers, workers, the resource server), so that none outlives
 * the lab whatever happens: the runner stops them in order, and if the lab's own process exits
 * first (a test timeout, an exception), an exit hook SIGKILLs the rest. Only children the lab
 * itself spawned are recorded, each until its exit event (so a reused PID is never signalled).
 */
const running = new Map<number, ChildProcess>();
let hooked = false;

function killAll(): void {
  for (const pid of running.keys()) {
    try {
      process.kill(pid, 'SIGCONT');
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  running.clear();
}

/** Records a child the lab spawned, until it exits. */
export function reapOnExit(child: ChildProcess): void {
  const pid = child.pid;
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  if (!hooked) {
    hooked = true;
    process.once('exit', killAll);
  }
  running.set(pid, child);
  child.once('exit', () => running.delete(pid));
}

/** PIDs of the lab's children still running (a test asserts there are none after a run). */
export function stillRunning(): number[] {
  return [...running.keys()];
}
