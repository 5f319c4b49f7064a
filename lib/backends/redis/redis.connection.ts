import { withTimeout } from '../backend.timers';
import { performance } from 'node:perf_hooks';
import type { Cluster, Redis } from 'ioredis';
import { LockBackendError } from '../../errors/lock-backend.error';
import type { RedisScript } from './redis.scripts';

const BACKEND_NAME = 'redis';

/** One operation in flight, in the order operations started (so in deadline order). */
class PendingOperation {
  /** Settled: answered, failed or timed out. */
  done = false;
  /** Set while the operation waits for the connection to become ready. */
  stopWaiting: (() => void) | undefined = undefined;
  next: PendingOperation | undefined = undefined;

  constructor(
    readonly operation: string,
    /** `performance.now()` past which the operation fails. */
    readonly deadline: number,
    readonly reject: (error: Error) => void,
  ) {}
}

/** What a command run through {@link RedisConnection.run} may ask about its operation. */
export interface RedisOperation {
  /** True once the operation settled (for example, timed out): send nothing more for it. */
  readonly done: boolean;
}

/** A command run on the connection's client for one operation. */
type Command<C, T> = (client: C, op: RedisOperation) => Promise<T>;

/**
 * Runs commands on one ioredis client so that each operation either settles or rejects with
 * `LockBackendError` within `commandTimeout` ms (one monotonic deadline per operation, covering
 * the wait for a connection and a NOSCRIPT fallback), whatever state the connection is in.
 *
 * Commands are only sent on a `ready` connection: while it is (re)connecting they wait for it,
 * within the same budget, instead of sitting in ioredis's offline queue, where they would run
 * late, after their caller was already told they failed (a ghost acquire would hold a lock
 * nobody owns). That also covers a user-provided client whose offline queue is on.
 *
 * Deadlines are enforced by one watchdog timer per connection, not one timer per command (as
 * ioredis's `commandTimeout` would arm): operations are kept in start order, which is deadline
 * order since they share one budget, and the watchdog wakes at the oldest pending deadline. A
 * steady stream of fast operations therefore re-arms it about once per `commandTimeout`. That
 * shared budget is why this is a linked list, O(1) per operation, and not a heap for deadlines
 * that move nor the renewal scheduler's periodic scan.
 */
export class RedisConnection<C extends Redis | Cluster = Redis | Cluster> {
  private head: PendingOperation | undefined;
  private tail: PendingOperation | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  /** Operations waiting for `ready`; the client listeners exist only while this is non-empty. */
  private readonly readyWaiters = new Set<() => void>();
  private lastError: Error | undefined;
  private closed = false;
  /** Refreshes an owned Cluster client's slot map (see the constructor). */
  private readonly slotRefresh: NodeJS.Timeout | undefined;

  /**
   * @param client the ioredis client
   * @param owned whether this backend created it (and so may close it and listen to its errors)
   * @param commandTimeout budget of one operation, in ms
   * @param slotsRefreshEvery for an owned Cluster client made with `slotsRefreshInterval: 0`:
   *   refresh its slot map every this many ms (0: never). ioredis's own refresh loop re-arms its
   *   timer when a refresh that was in flight at `disconnect()` ends, and then keeps the process
   *   alive for good; this timer is unref'd and stops at `close()`.
   */
  constructor(
    readonly client: C,
    readonly owned: boolean,
    private readonly commandTimeout: number,
    slotsRefreshEvery = 0,
  ) {
    if (owned && slotsRefreshEvery > 0 && isCluster(client)) {
      this.slotRefresh = setInterval(() => {
        if (client.status === 'ready') client.refreshSlotsCache();
      }, slotsRefreshEvery);
      this.slotRefresh.unref();
    }
    if (owned) {
      // Connection errors also surface as rejected operations; without a listener ioredis would
      // print every reconnect failure as an unhandled error event.
      client.on('error', this.recordError);
      client.on('ready', () => {
        this.lastError = undefined;
      });
    }
  }

  /**
   * Runs `command` once the connection is ready, all within `commandTimeout`.
   *
   * @throws LockBackendError on any failure, timeout or closed backend
   */
  run<T>(operation: string, command: Command<C, T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.closed) {
        reject(this.error(operation, 'the backend is closed'));
        return;
      }
      const op = this.track(operation, reject);
      this.whenReady(op, command).then(
        (value) => {
          if (this.finish(op)) resolve(value);
        },
        (error: unknown) => {
          if (this.finish(op)) reject(this.wrap(operation, error));
        },
      );
    });
  }

  /**
   * Runs `script` with EVALSHA, falling back to EVAL (which also caches it on the server) when
   * the server does not know the SHA: after a restart, a failover or SCRIPT FLUSH. Both share the
   * operation's deadline; the EVAL is not sent once it has passed.
   *
   * @param argv KEYS then ARGV of the script, in one array
   * @throws LockBackendError on any failure, timeout or closed backend
   */
  script(
    operation: string,
    script: RedisScript,
    keyCount: number,
    argv: readonly (string | number)[],
  ): Promise<unknown> {
    // One argument array for EVALSHA and its EVAL fallback, built without a spread: this runs for
    // every lock operation, and ioredis copies the array into its command anyway.
    const args: (string | number)[] = new Array<string | number>(argv.length + 2);
    args[0] = script.sha;
    args[1] = keyCount;
    for (let i = 0; i < argv.length; i++) args[i + 2] = argv[i];
    return this.run(operation, (client, op) => this.evalScript(client, op, script, args));
  }

  /** EVALSHA of `args`, with the NOSCRIPT and Cluster-refusal fallbacks of {@link script}. */
  private evalScript(
    client: C,
    op: RedisOperation,
    script: RedisScript,
    args: (string | number)[],
  ): Promise<unknown> {
    return client.call('evalsha', args).catch((error: unknown) => {
      if (isNoScript(error)) {
        // A copy with the source in place of the SHA: a retry after a refusal sends `args` again.
        const source = args.slice();
        source[0] = script.source;
        // send() sends nothing once the operation settled (timed out while EVALSHA was pending).
        return this.send(op, (c) => c.call('eval', source)).catch((e: unknown) =>
          this.retryRefusal(client, op, script, args, e),
        );
      }
      return this.retryRefusal(client, op, script, args, error);
    });
  }

  /**
   * Redis Cluster refuses a multi-key script while its slot migrates (TRYAGAIN, which ioredis
   * retries a few times, then gives up with "Too many Cluster redirections"), and any script
   * while the slot has no serving node (CLUSTERDOWN, in a failover). A refusal ran nothing, so
   * trying again, within the operation's budget, is safe.
   */
  private async retryRefusal(
    client: C,
    op: RedisOperation,
    script: RedisScript,
    args: (string | number)[],
    error: unknown,
  ): Promise<unknown> {
    if (!isClusterRetry(error) || op.done) throw error;
    await new Promise((resolve) => setTimeout(resolve, TRY_AGAIN_DELAY_MS));
    return this.send(op, (c) => this.evalScript(c, op, script, args));
  }

  /**
   * Like {@link script}, with `WAIT replicas timeout` sent right behind the script (and behind
   * its EVAL fallback) on the same connection, without waiting for the script's reply: Redis runs
   * them in order, so the WAIT covers the script's writes, at the cost of no extra round trip.
   * Resolves the script's reply and how many replicas acknowledged it.
   *
   * @throws LockBackendError on any failure, timeout or closed backend
   */
  scriptWithAcks(
    operation: string,
    script: RedisScript,
    keyCount: number,
    argv: readonly (string | number)[],
    acks: { readonly replicas: number; readonly timeout: number },
  ): Promise<{ reply: unknown; acked: unknown }> {
    const both = (client: C, command: string, body: string): Promise<[unknown, unknown]> => {
      const reply = client.call(command, [body, keyCount, ...argv]);
      const acked = client.call('wait', [acks.replicas, acks.timeout]);
      // The WAIT answers after the script, whichever way the script went: never left unhandled.
      acked.catch(() => undefined);
      return reply.then(async (r) => [r, await acked]);
    };
    return this.run(operation, (client, op) =>
      both(client, 'evalsha', script.sha)
        .catch((error: unknown) => {
          if (!isNoScript(error)) throw error;
          return this.send(op, (c) => both(c, 'eval', script.source));
        })
        .then(([reply, acked]) => ({ reply, acked })),
    );
  }

  /** Closes the client if this backend owns it; idempotent, bounded by `commandTimeout`. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.slotRefresh);
    // Leaves no listener behind on a client the user keeps using.
    this.wakeReadyWaiters();
    if (!this.owned) return;
    const client = this.client;
    if (client.status === 'ready') {
      try {
        await withTimeout(client.quit(), this.commandTimeout, () => new Error('quit timed out'));
      } catch {
        // Fall through: a connection that cannot say goodbye is simply dropped.
      }
    }
    // Also after a QUIT: only disconnect() stops what ioredis runs beside the socket, such as the
    // Sentinel failover detector's connections, which would otherwise stay open and reconnect.
    client.disconnect();
  }

  /** Sends `command` now if the connection is ready, else once it is (within the deadline). */
  private whenReady<T>(op: PendingOperation, command: Command<C, T>): Promise<T> {
    if (this.client.status === 'ready') return this.send(op, command);
    return this.ready(op).then(() => this.send(op, command));
  }

  private send<T>(op: RedisOperation, command: Command<C, T>): Promise<T> {
    // The operation may have timed out while waiting for the connection: send nothing late.
    if (op.done) return Promise.reject(new Error('operation already settled'));
    // A command that throws instead of rejecting must still settle the operation.
    try {
      return command(this.client, op);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Resolves once the client is ready (or rejects when it never will); bounded by the watchdog. */
  private ready(op: PendingOperation): Promise<void> {
    const client = this.client;
    if (client.status === 'end') {
      return Promise.reject(this.error(op.operation, 'the Redis connection is closed'));
    }
    if (client.status === 'wait') client.connect().catch(() => undefined);
    return new Promise<void>((resolve, reject) => {
      const waiter = (): void => {
        op.stopWaiting = undefined;
        // Re-read: the status changed while we waited, which TypeScript cannot see.
        const status: string = client.status;
        if (this.closed) reject(this.error(op.operation, 'the backend is closed'));
        else if (status !== 'ready')
          reject(this.error(op.operation, `Redis connection is ${status}`));
        else resolve();
      };
      if (this.readyWaiters.size === 0) {
        // One set of listeners per outage, shared by every waiting operation, so thousands of
        // them do not pile listeners onto the client. A user's client is listened to for errors
        // only meanwhile: the reason it is not ready goes into the operations' errors.
        client.on('ready', this.wakeReadyWaiters);
        client.on('end', this.wakeReadyWaiters);
        if (!this.owned) client.on('error', this.recordError);
      }
      this.readyWaiters.add(waiter);
      op.stopWaiting = () => this.dropReadyWaiter(waiter);
    });
  }

  private readonly wakeReadyWaiters = (): void => {
    const waiters = [...this.readyWaiters];
    this.readyWaiters.clear();
    this.stopListening();
    if (this.client.status === 'ready') this.lastError = undefined;
    for (const waiter of waiters) waiter();
  };

  private dropReadyWaiter(waiter: () => void): void {
    if (this.readyWaiters.delete(waiter) && this.readyWaiters.size === 0) this.stopListening();
  }

  private stopListening(): void {
    this.client.off('ready', this.wakeReadyWaiters);
    this.client.off('end', this.wakeReadyWaiters);
    if (!this.owned) this.client.off('error', this.recordError);
  }

  private readonly recordError = (error: Error): void => {
    this.lastError = error;
  };

  private track(operation: string, reject: (error: Error) => void): PendingOperation {
    const op = new PendingOperation(operation, performance.now() + this.commandTimeout, reject);
    if (this.tail) this.tail.next = op;
    else this.head = op;
    this.tail = op;
    if (!this.watchdog) this.arm(this.commandTimeout);
    else if (op === this.head) this.watchdog.ref();
    return op;
  }

  /** Marks `op` settled; false when it already was (it timed out first). */
  private finish(op: PendingOperation): boolean {
    if (op.done) return false;
    op.done = true;
    let head = this.head;
    while (head?.done) head = head.next;
    this.head = head;
    if (!head) {
      this.tail = undefined;
      this.watchdog?.unref();
    }
    return true;
  }

  private arm(ms: number): void {
    // Ref'd while an operation is pending, like the I/O it bounds: an operation someone awaits
    // settles before the process may exit, even when nothing else is pending (no socket while
    // reconnecting). Once none is, finish() unrefs it and it lapses without re-arming.
    this.watchdog = setTimeout(this.expire, Math.max(1, Math.ceil(ms)));
  }

  /** Fails every operation past its deadline, then sleeps until the next one's. */
  private readonly expire = (): void => {
    this.watchdog = undefined;
    const now = performance.now();
    let op = this.head;
    while (op && (op.done || op.deadline <= now)) {
      if (!op.done) {
        op.done = true;
        const waiting = op.stopWaiting !== undefined;
        op.stopWaiting?.();
        op.stopWaiting = undefined;
        op.reject(
          this.error(
            op.operation,
            waiting
              ? `not connected to Redis within ${this.commandTimeout} ms`
              : `no reply within ${this.commandTimeout} ms`,
          ),
        );
      }
      op = op.next;
    }
    this.head = op;
    if (op) this.arm(op.deadline - now);
    else this.tail = undefined;
  };

  private error(operation: string, message: string): LockBackendError {
    const detail = this.lastError ? ` (last connection error: ${this.lastError.message})` : '';
    return new LockBackendError(BACKEND_NAME, operation, `${message}${detail}`, {
      cause: this.lastError,
    });
  }

  private wrap(operation: string, error: unknown): LockBackendError {
    if (error instanceof LockBackendError) return error;
    let message = error instanceof Error ? error.message : String(error);
    // A user client's own ioredis commandTimeout may fire first.
    if (message === 'Command timed out') message = `no reply within ${this.commandTimeout} ms`;
    // A dropped connection fails its commands with "Connection is closed.": say why it dropped.
    const reply = error instanceof Error && error.name === 'ReplyError';
    if (this.lastError && this.lastError !== error && !reply) {
      message += ` (last connection error: ${this.lastError.message})`;
    }
    return new LockBackendError(BACKEND_NAME, operation, message, { cause: error });
  }
}

/** Pause before a script refused during a slot migration is sent again, in ms. */
const TRY_AGAIN_DELAY_MS = 50;

/** A Redis Cluster refusal, which ran nothing: a slot migrating, or the cluster not serving it. */
function isClusterRetry(error: unknown): boolean {
  return (
    error instanceof Error &&
    (error.message.startsWith('TRYAGAIN') ||
      error.message.startsWith('CLUSTERDOWN') ||
      error.message.startsWith('Too many Cluster redirections'))
  );
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

function isCluster(client: Redis | Cluster): client is Cluster {
  return typeof (client as Partial<Cluster>).refreshSlotsCache === 'function';
}
