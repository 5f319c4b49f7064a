import { ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { stopPid } from '../servers/server.process';
import { eventually, within } from '../support/async.helpers';
import { redisUrl } from '../support/test-env';
import { uniqueKey } from '../support/test-ids';
import type { ChildEvent } from './fixtures/lock-client.process';

const SCRIPT = join(__dirname, 'fixtures', 'shutdown-app.child.js');
const BUILT = join(__dirname, '..', '..', 'dist', 'index.js');
/** The route's lock ttl: a lock not renewed during the grace expires well within the handler. */
const TTL = 1000;
const DEFAULT_GRACE = 10_000;

interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly at: number;
}

interface Answer {
  readonly status: number;
  readonly body: string;
}

/** A GET on 127.0.0.1, without connection reuse, so a closing server sees no idle socket of ours. */
function get(port: number, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** The answer, or the error message if there was none (a refused connection). */
async function settle(answer: Promise<Answer>): Promise<Answer | { error: string }> {
  try {
    return await answer;
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

function numberField(event: ChildEvent, field: string): number {
  const value = event[field];
  if (typeof value !== 'number') throw new Error(`${event.event}.${field} is not a number`);
  return value;
}

/**
 * One instance of shutdown-app.child.js, driven over HTTP (LockClientProcess drives the other
 * fixture over stdin). Only the test that spawned it signals it, by its PID.
 */
class AppInstance {
  readonly events: ChildEvent[] = [];
  readonly exited: Promise<Exit>;
  private output = '';

  private constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        this.events.push(JSON.parse(line) as ChildEvent);
      } catch {
        this.output += `${line}\n`;
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
    );
  }

  static async start(env: Record<string, string> = {}): Promise<AppInstance> {
    if (!existsSync(BUILT)) throw new Error(`${BUILT} is missing: run \`npm run build\` first`);
    const inherited = { ...process.env };
    delete inherited.SHUTDOWN_GRACE;
    const child = spawn(process.execPath, [SCRIPT], {
      env: { ...inherited, REDIS_URL: redisUrl(), LOCK_TTL: String(TTL), ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const instance = new AppInstance(child);
    running.push(instance);
    await instance.waitFor('listening', undefined, 15_000);
    return instance;
  }

  get gone(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error('child has no pid');
    return this.child.pid;
  }

  get port(): number {
    return numberField(this.find('listening')!, 'port');
  }

  find(name: string, id?: string): ChildEvent | undefined {
    return this.events.find((e) => e.event === name && (id === undefined || e.id === id));
  }

  async waitFor(name: string, id: string | undefined, ms: number): Promise<ChildEvent> {
    const what = `"${name}"${id === undefined ? '' : ` of ${id}`}`;
    try {
      await eventually(() => this.find(name, id) !== undefined || this.gone, ms, `child: ${what}`);
    } catch (err) {
      throw new Error(`${(err as Error).message}; output: ${this.output}`);
    }
    const event = this.find(name, id);
    if (!event) throw new Error(`child exited before ${what}; output: ${this.output}`);
    return event;
  }

  /** Runs the locked route for `ms`; `stopOnLoss`: the work ends as soon as its lock's signal aborts. */
  job(id: string, ms: number, stopOnLoss = false): Promise<Answer> {
    return get(this.port, `/job/${encodeURIComponent(id)}?ms=${ms}${stopOnLoss ? '&stop=1' : ''}`);
  }

  async stop(): Promise<void> {
    if (this.gone) return;
    await stopPid(this.pid, 'SIGKILL');
  }
}

const running: AppInstance[] = [];

/**
 * Issue 10 item 3: a rolling deploy SIGTERMs one of two instances in the middle of a locked
 * request. The request must finish under its lock, renewed (the ttl is shorter than the work),
 * while the other instance waits; new acquisitions on the stopping instance are refused; a grace
 * that runs out releases the lock and the work sees it lost.
 */
describe('Graceful shutdown of a Nest HTTP app, two instances on Redis', () => {
  afterEach(async () => {
    await Promise.all(running.splice(0).map((instance) => instance.stop()));
  });

  it('finishes the in-flight request under its lock; the other instance gets the lock after it', async () => {
    const work = 3 * TTL;
    const [a, b] = await Promise.all([AppInstance.start(), AppInstance.start()]);
    const key = uniqueKey('grace');
    // The work ignores its lock's signal, as most handlers do: an early release shows as overlap.
    const answerA = settle(a.job(key, work));
    const startedA = await a.waitFor('started', key, 10_000);

    const signalledAt = Date.now();
    process.kill(a.pid, 'SIGTERM');
    const answerB = settle(b.job(key, 100));
    await a.waitFor('sigterm', undefined, 5_000);
    const fresh = uniqueKey('grace-new');
    const refused = await within(5_000, settle(a.job(fresh, 100)), 'new request on A');

    const exit = await within(DEFAULT_GRACE + 5_000, a.exited, 'exit of A');
    const startedB = await b.waitFor('started', key, 15_000);
    const endedA = await a.waitFor('ended', key, 1_000);

    const endOfA = numberField(endedA, 'at');
    // One picture, so that a failure shows every consequence of an early release at once.
    expect({
      answerA: await answerA,
      workOfAAborted: endedA.aborted,
      overlapMs: Math.max(0, endOfA - numberField(startedB, 'at')),
      laterFencingTokenForB:
        numberField(startedB, 'fencingToken') > numberField(startedA, 'fencingToken'),
      answerB: await answerB,
      exit: { code: exit.code, signal: exit.signal },
      exitAfterWorkOfA: exit.at >= endOfA,
      // Shutdown went on once the last lock was released, not at the end of the grace.
      exitBeforeGraceRanOut: exit.at - signalledAt < DEFAULT_GRACE,
    }).toEqual({
      answerA: {
        status: 200,
        body: JSON.stringify({ id: key, fencingToken: startedA.fencingToken }),
      },
      workOfAAborted: false,
      overlapMs: 0,
      laterFencingTokenForB: true,
      answerB: expect.objectContaining({ status: 200 }),
      exit: { code: 0, signal: null },
      exitAfterWorkOfA: true,
      exitBeforeGraceRanOut: true,
    });
    expect(endOfA - numberField(startedA, 'at')).toBeGreaterThanOrEqual(work);
    // The new acquisition was refused as a shutdown (503), not as a backend failure (500), and
    // it was the only request of A that failed.
    expect(a.find('started', fresh)).toBeUndefined();
    expect(refused).toMatchObject({ status: 503, body: expect.stringMatching(/shutting down/i) });
    expect(a.events.filter((e) => e.event === 'failed')).toEqual([
      expect.objectContaining({
        url: `/job/${encodeURIComponent(fresh)}?ms=100`,
        cause: { name: 'LockShutdownError', message: expect.stringMatching(/shutting down/i) },
      }),
    ]);
  }, 40_000);

  it('releases at the end of the grace: the work sees LockLostError, the other instance goes on', async () => {
    // Twice the ttl, so that a lock not renewed during the grace would be lost before it ends.
    const grace = 2 * TTL;
    const work = 6000;
    const [a, b] = await Promise.all([
      AppInstance.start({ SHUTDOWN_GRACE: String(grace) }),
      AppInstance.start(),
    ]);
    const key = uniqueKey('grace-out');
    // Work that stops when its lock is lost: otherwise the HTTP server, closed after the lock
    // module's hook, would keep the process until the request ends.
    const answerA = settle(a.job(key, work, true));
    const startedA = await a.waitFor('started', key, 10_000);

    const signalledAt = Date.now();
    process.kill(a.pid, 'SIGTERM');
    const answerB = settle(b.job(key, 100));

    // Bounded well below the work's own time: shutdown did not wait for the work to end.
    const exit = await within(grace + 2_500, a.exited, 'exit of A');
    const abortedA = await a.waitFor('aborted', key, 1_000);
    const endedA = await a.waitFor('ended', key, 1_000);
    const startedB = await b.waitFor('started', key, 10_000);

    // The lock stayed A's (renewed) through the grace, then was released as lost.
    expect(abortedA).toMatchObject({
      name: 'LockLostError',
      message: expect.stringMatching(/grace/i),
    });
    expect(numberField(abortedA, 'at') - signalledAt).toBeGreaterThanOrEqual(grace - 50);
    expect(endedA.aborted).toBe(true);
    expect(a.find('failed', undefined)).toMatchObject({ name: 'LockLostError' });
    expect(await answerA).toMatchObject({ status: 500 });
    // B got it after about the grace, long before A's work would have ended.
    expect(numberField(startedB, 'at') - signalledAt).toBeGreaterThanOrEqual(grace - 50);
    expect(numberField(startedB, 'at')).toBeLessThan(numberField(startedA, 'at') + work - 1_500);
    expect(numberField(startedB, 'fencingToken')).toBeGreaterThan(
      numberField(startedA, 'fencingToken'),
    );
    expect(await answerB).toMatchObject({ status: 200 });
    expect(exit).toMatchObject({ code: 0, signal: null });
  }, 40_000);
});
