import type { Redis } from 'ioredis';
import { LockBackendError } from '../../errors/lock-backend.error';

const BACKEND_NAME = 'redis';

/**
 * Runs commands on one ioredis client so that each either settles or rejects with
 * `LockBackendError` within `commandTimeout` ms, whatever state the connection is in.
 *
 * Commands are only sent on a `ready` connection: while it is (re)connecting they wait for it,
 * within the same time budget, instead of sitting in ioredis's offline queue, where they would
 * run late, after their caller was already told they failed (a ghost acquire would hold a lock
 * nobody owns). That also covers a user-provided client whose offline queue is on.
 */
export class RedisConnection {
  private readyWait: Promise<void> | undefined;
  private stopWaiting: (() => void) | undefined;
  private lastError: Error | undefined;
  private closed = false;

  /**
   * @param client the ioredis client
   * @param owned whether this backend created it (and so may close it and listen to its errors)
   * @param commandTimeout budget of one operation, in ms
   */
  constructor(
    readonly client: Redis,
    readonly owned: boolean,
    private readonly commandTimeout: number,
  ) {
    if (owned) {
      // Connection errors also surface as rejected operations; without a listener ioredis would
      // print every reconnect failure as an unhandled error event.
      client.on('error', (error: Error) => {
        this.lastError = error;
      });
    }
  }

  /**
   * Runs `command` once the connection is ready, all within `commandTimeout`.
   *
   * @throws LockBackendError on any failure, timeout or closed backend
   */
  async run<T>(operation: string, command: (client: Redis) => Promise<T>): Promise<T> {
    if (this.owned && !this.closed && this.client.status === 'ready') {
      // Hot path: on a connection we opened, ioredis's own commandTimeout bounds the command,
      // so no timer of ours is needed per call.
      try {
        return await command(this.client);
      } catch (error) {
        throw this.wrap(operation, error);
      }
    }
    const deadline = Date.now() + this.commandTimeout;
    try {
      await this.ready(operation, deadline);
      return await withTimeout(command(this.client), deadline - Date.now(), () =>
        this.error(operation, `no reply within ${this.commandTimeout} ms`),
      );
    } catch (error) {
      throw this.wrap(operation, error);
    }
  }

  /** Closes the client if this backend owns it; idempotent, bounded by `commandTimeout`. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Leaves no listener behind on a client the user keeps using.
    this.stopWaiting?.();
    if (!this.owned) return;
    const client = this.client;
    if (client.status === 'ready') {
      try {
        await withTimeout(client.quit(), this.commandTimeout, () => new Error('quit timed out'));
        return;
      } catch {
        // Fall through: a connection that cannot say goodbye is simply dropped.
      }
    }
    client.disconnect();
  }

  private async ready(operation: string, deadline: number): Promise<void> {
    if (this.closed) throw this.error(operation, 'the backend is closed');
    const client = this.client;
    if (client.status === 'ready') return;
    if (client.status === 'end') throw this.error(operation, 'the Redis connection is closed');
    if (client.status === 'wait') client.connect().catch(() => undefined);
    // One listener pair per outage, shared by every waiting command, so thousands of waiting
    // operations do not pile listeners onto the client.
    this.readyWait ??= new Promise<void>((resolve) => {
      const done = (): void => {
        client.off('ready', done);
        client.off('end', done);
        this.readyWait = undefined;
        this.stopWaiting = undefined;
        resolve();
      };
      this.stopWaiting = done;
      client.on('ready', done);
      client.on('end', done);
    });
    await withTimeout(this.readyWait, deadline - Date.now(), () =>
      this.error(operation, `not connected to Redis within ${this.commandTimeout} ms`),
    );
    // Re-read: the status changed while we waited, which TypeScript cannot see.
    const status: string = client.status;
    if (status !== 'ready') {
      throw this.error(operation, `Redis connection is ${status}`);
    }
  }

  private error(operation: string, message: string): LockBackendError {
    const detail = this.lastError ? ` (last connection error: ${this.lastError.message})` : '';
    return new LockBackendError(BACKEND_NAME, operation, `${message}${detail}`, {
      cause: this.lastError,
    });
  }

  private wrap(operation: string, error: unknown): LockBackendError {
    if (error instanceof LockBackendError) return error;
    let message = error instanceof Error ? error.message : String(error);
    // ioredis's own commandTimeout, on connections we opened, may fire first.
    if (message === 'Command timed out') message = `no reply within ${this.commandTimeout} ms`;
    return new LockBackendError(BACKEND_NAME, operation, message, { cause: error });
  }
}

/**
 * Settles like `promise`, or rejects with `onTimeout()` after `ms` (at least 1). The timer never
 * keeps the process alive.
 */
export function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  onTimeout: () => Error,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), Math.max(1, ms));
    timer.unref();
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
