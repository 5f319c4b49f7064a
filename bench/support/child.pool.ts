import { ChildProcess, fork } from 'node:child_process';
import { stopPid } from '../../test/servers/server.process';
import { errorMessage, withTimeout } from './time.util';

/** A request from the orchestrator to a child process. */
interface ChildRequest {
  readonly id: number;
  readonly op: string;
  readonly payload?: unknown;
}

/** A child's answer to one request. */
interface ChildResponse {
  readonly id: number;
  readonly ok: boolean;
  readonly result?: unknown;
  readonly error?: string;
}

function isResponse(value: unknown): value is ChildResponse {
  return typeof value === 'object' && value !== null && 'id' in value && 'ok' in value;
}

/**
 * Child processes forked from one compiled script, driven by request/response messages over IPC.
 * Stopped by PID at the end (and by the orchestrator's cleanup on error).
 */
export class ChildPool {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (value: unknown) => void; reject: (err: Error) => void }
  >();

  private constructor(readonly children: readonly ChildProcess[]) {
    for (const child of children) {
      child.on('message', (message: unknown) => {
        if (!isResponse(message)) return;
        const waiter = this.pending.get(message.id);
        if (!waiter) return;
        this.pending.delete(message.id);
        if (message.ok) waiter.resolve(message.result);
        else waiter.reject(new Error(message.error ?? 'child failed'));
      });
      child.on('exit', (code, signal) => {
        for (const [id, waiter] of this.pending) {
          this.pending.delete(id);
          waiter.reject(new Error(`child ${child.pid} exited (${code ?? signal})`));
        }
      });
    }
  }

  /**
   * Forks `count` copies of `script` (a compiled .js file) with the given extra environment and
   * node flags.
   */
  static start(
    script: string,
    count: number,
    env: NodeJS.ProcessEnv,
    execArgv: readonly string[] = [],
  ): ChildPool {
    const children = Array.from({ length: count }, () =>
      fork(script, [], {
        env: { ...process.env, ...env },
        execArgv: [...process.execArgv, ...execArgv],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      }),
    );
    return new ChildPool(children);
  }

  /** PIDs of the children (for cleanup). */
  get pids(): number[] {
    return this.children.map((c) => c.pid).filter((pid): pid is number => pid !== undefined);
  }

  /** Sends `op` to child `index` and resolves its result; rejects after `timeoutMs`. */
  call<T>(index: number, op: string, payload: unknown, timeoutMs: number): Promise<T> {
    const child = this.children[index];
    const id = this.nextId++;
    const answer = new Promise<unknown>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const request: ChildRequest = { id, op, payload };
      child.send(request, (err) => {
        if (err) {
          this.pending.delete(id);
          reject(err);
        }
      });
    });
    return withTimeout(answer, timeoutMs, `child ${child.pid} ${op}`).catch((err: unknown) => {
      this.pending.delete(id);
      throw err;
    }) as Promise<T>;
  }

  /** Sends `op` to every child (payload per child) and resolves all results. */
  all<T>(op: string, payload: (index: number) => unknown, timeoutMs: number): Promise<T[]> {
    return Promise.all(this.children.map((_, i) => this.call<T>(i, op, payload(i), timeoutMs)));
  }

  /** Asks every child to exit, then stops any that did not by PID. */
  async stop(): Promise<void> {
    await Promise.allSettled(this.children.map((_, i) => this.call(i, 'exit', undefined, 5_000)));
    await Promise.all(this.pids.map((pid) => stopPid(pid)));
  }
}

/** Child side: answers the orchestrator's requests with `handlers`, one at a time. */
export function serveParent(
  handlers: Readonly<Record<string, (payload: unknown) => Promise<unknown>>>,
): void {
  if (!process.send) throw new Error('this script must be started by the bench orchestrator');
  const reply = (response: ChildResponse): void => {
    process.send?.(response);
  };
  let queue = Promise.resolve();
  process.on('disconnect', () => process.exit(1));
  process.on('message', (message: unknown) => {
    const request = message as ChildRequest;
    queue = queue.then(async () => {
      if (request.op === 'exit') {
        await handlers.exit?.(undefined).catch(() => undefined);
        reply({ id: request.id, ok: true });
        setTimeout(() => process.exit(0), 20);
        return;
      }
      const handler = handlers[request.op];
      try {
        if (!handler) throw new Error(`unknown op "${request.op}"`);
        reply({ id: request.id, ok: true, result: await handler(request.payload) });
      } catch (err) {
        reply({ id: request.id, ok: false, error: errorMessage(err) });
      }
    });
  });
}
