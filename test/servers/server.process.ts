import { execFileSync, spawn, ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, openSync, closeSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep } from '../support/async.helpers';

/** A server process started for tests, stopped by PID. */
export interface ServerProcess {
  readonly pid: number;
  readonly port: number;
  readonly dir: string;
  readonly child: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** A free TCP port on 127.0.0.1, as chosen by the kernel. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function onPath(binary: string): string | undefined {
  try {
    return (
      execFileSync('sh', ['-c', `command -v ${binary}`], { encoding: 'utf8' }).trim() || undefined
    );
  } catch {
    return undefined;
  }
}

/**
 * Path of `binary`: from PATH, else installed from Debian's `debPackage` when running as root.
 * Throws with an actionable message otherwise.
 */
export function ensureBinary(binary: string, debPackage: string): string {
  const found = onPath(binary);
  if (found) return found;
  if (process.getuid?.() !== 0) {
    throw new Error(`${binary} is not on PATH; install it (Debian: apt-get install ${debPackage})`);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env, timeout: 300_000 });
  execFileSync('apt-get', ['install', '-y', '-qq', debPackage], {
    stdio: 'inherit',
    env,
    timeout: 600_000,
  });
  const installed = onPath(binary);
  if (!installed) throw new Error(`apt-get install ${debPackage} did not provide ${binary}`);
  return installed;
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port; rejects after timeoutMs. */
export async function waitForPort(
  port: number,
  timeoutMs: number,
  child?: ChildProcess,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; attempt < 10_000 && Date.now() < deadline; attempt++) {
    if (child && child.exitCode !== null) {
      throw new Error(`server exited with code ${child.exitCode} before listening on ${port}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listened on 127.0.0.1:${port} within ${timeoutMs} ms`);
}

/** Sends `signal` to `pid` and waits (bounded) for it to exit, escalating to SIGKILL. */
export async function stopPid(pid: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const alive = (): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (!alive()) return;
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  for (let i = 0; i < 100 && alive(); i++) await sleep(50);
  if (alive()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    for (let i = 0; i < 100 && alive(); i++) await sleep(20);
  }
}

/**
 * Spawns `binary args` with its output in a log file inside a fresh temporary dir, waits until
 * `port` accepts connections, and returns a handle that stops it by PID.
 */
export async function startServer(options: {
  name: string;
  binary: string;
  args: (dir: string) => string[];
  port: number;
  readyTimeoutMs?: number;
  dir?: string;
}): Promise<ServerProcess> {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), `ndl-${options.name}-`));
  const logFd = openSync(join(dir, 'server.log'), 'a');
  const child = spawn(options.binary, options.args(dir), {
    cwd: dir,
    stdio: ['ignore', logFd, logFd],
    detached: false,
  });
  closeSync(logFd);
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${options.binary}`);
  const handle: ServerProcess = {
    pid,
    port: options.port,
    dir,
    child,
    stop: async (signal?: NodeJS.Signals) => {
      await stopPid(pid, signal);
    },
  };
  try {
    await waitForPort(options.port, options.readyTimeoutMs ?? 20_000, child);
  } catch (err) {
    await handle.stop('SIGKILL');
    throw new Error(`${options.name} did not start (log in ${dir}/server.log): ${String(err)}`);
  }
  return handle;
}

/** Removes a server's temporary dir (after it stopped). */
export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
