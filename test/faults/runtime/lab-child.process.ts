import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { stopPid } from '../../servers/server.process';
import { reapOnExit } from './lab.reaper';

/** One JSON line a lab child printed on stdout. */
export interface ChildLine {
  readonly event: string;
  readonly [field: string]: unknown;
}

const REGISTER = join(__dirname, 'typescript.register.js');
const LISTENER_ONLY: ReadonlySet<string> = new Set(['status', 'progress', 'blocked']);

/**
 * A TypeScript entry point of the lab run as its own OS process (through the transpile-on-load
 * hook), talking JSON lines: commands on stdin, events on stdout. The lab signals it only by
 * its own PID; closing stdin tells it to finish.
 */
export class LabChildProcess {
  private readonly lines: ChildLine[] = [];
  private readonly waiters: {
    match: (l: ChildLine) => boolean;
    resolve: (l: ChildLine) => void;
  }[] = [];
  private readonly listeners: ((line: ChildLine) => void)[] = [];
  private stderr = '';
  readonly exited: Promise<number | null>;

  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    createInterface({ input: child.stdout! }).on('line', (text) => {
      let line: ChildLine;
      try {
        line = JSON.parse(text) as ChildLine;
      } catch {
        this.stderr += `${text}\n`;
        return;
      }
      for (const listener of this.listeners) listener(line);
      // Frequent or repeated lines go to listeners only, so a long run does not pile them up.
      if (LISTENER_ONLY.has(line.event)) return;
      this.lines.push(line);
      for (const w of this.waiters.splice(0)) {
        if (w.match(line)) w.resolve(line);
        else this.waiters.push(w);
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      // Bounded: a child stuck printing must not grow the lab's memory.
      if (this.stderr.length < 20_000) this.stderr += chunk.toString();
    });
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  /** Spawns `entry` (a .ts file) with `config` as JSON in argv[2]. */
  static start(name: string, entry: string, config: unknown): LabChildProcess {
    const child = spawn(process.execPath, ['-r', REGISTER, entry, JSON.stringify(config)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    reapOnExit(child);
    return new LabChildProcess(name, child);
  }

  get pid(): number {
    const pid = this.child.pid;
    if (pid === undefined) throw new Error(`${this.name} has no pid`);
    return pid;
  }

  get errors(): string {
    return this.stderr;
  }

  /** Calls `listener` with every line printed from now on. */
  onLine(listener: (line: ChildLine) => void): void {
    this.listeners.push(listener);
  }

  send(command: Record<string, unknown>): void {
    if (this.child.stdin?.writable) this.child.stdin.write(`${JSON.stringify(command)}\n`);
  }

  /** The first line named `event` (printed already or to come), within `ms`; rejects on a crash. */
  next(event: string, ms: number): Promise<ChildLine> {
    const match = (l: ChildLine): boolean => l.event === event || l.event === 'crashed';
    const check = (l: ChildLine): ChildLine => {
      if (l.event === 'crashed') throw new Error(`${this.name} crashed: ${String(l.message)}`);
      return l;
    };
    const seen = this.lines.find(match);
    if (seen) return Promise.resolve().then(() => check(seen));
    return new Promise<ChildLine>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(new Error(`${this.name}: no "${event}" within ${ms} ms; stderr: ${this.stderr}`)),
        ms,
      );
      this.waiters.push({
        match,
        resolve: (l) => {
          clearTimeout(timer);
          try {
            resolve(check(l));
          } catch (err) {
            reject(err);
          }
        },
      });
    });
  }

  /** Closes stdin (the child finishes and exits), then waits `ms` before killing it by PID. */
  async stop(ms: number): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    try {
      process.kill(this.pid, 'SIGCONT'); // a frozen child cannot finish
    } catch {
      /* already gone */
    }
    this.child.stdin?.end();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), ms);
    });
    const result = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (result === 'timeout') await stopPid(this.pid, 'SIGKILL');
  }
}
