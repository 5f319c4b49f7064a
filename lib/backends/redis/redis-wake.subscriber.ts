import type { Redis } from 'ioredis';
import type { Unsubscribe } from '../lock-backend.interface';
import { LockBackendError } from '../../errors/lock-backend.error';
import { RedisConnection } from './redis.connection';

/**
 * Receives wake-ups for this backend instance: one dedicated subscriber connection, subscribed
 * once to the instance's own channel, whose messages carry the token of the waiter to wake.
 *
 * Listeners live in a map keyed by waiter token and leave it on unsubscribe, so memory follows
 * the live waiters, never the lock keys ever seen. ioredis re-subscribes by itself after a
 * reconnect; a message published meanwhile is lost, which `retryAfter` covers.
 */
export class RedisWakeSubscriber {
  private readonly listeners = new Map<string, Set<() => void>>();
  private connection: RedisConnection | undefined;
  private subscribed: Promise<void> | undefined;
  /** The first SUBSCRIBE succeeded; ioredis re-subscribes by itself after reconnects. */
  private ready = false;
  private closed = false;

  /**
   * @param createClient opens the subscriber connection (called once, on first need)
   * @param channel the pub/sub channel of this backend instance
   * @param commandTimeout budget of the SUBSCRIBE, in ms
   */
  constructor(
    private readonly createClient: () => Redis,
    readonly channel: string,
    private readonly commandTimeout: number,
  ) {}

  /** Number of tokens with at least one listener. */
  get listenerCount(): number {
    return this.listeners.size;
  }

  /** Calls `listener` on every wake-up of `token` until the returned function is called. */
  on(token: string, listener: () => void): Unsubscribe {
    if (this.closed) return () => undefined;
    let set = this.listeners.get(token);
    if (!set) {
      set = new Set();
      this.listeners.set(token, set);
    }
    // A fresh wrapper per registration, so registering one function twice needs two removals.
    const entry = (): void => listener();
    set.add(entry);
    // Subscribing early lets the first acquire find the channel ready; failures resurface there.
    if (!this.ready) this.subscribe()?.catch(() => undefined);
    return () => {
      const current = this.listeners.get(token);
      if (!current) return;
      current.delete(entry);
      if (current.size === 0) this.listeners.delete(token);
    };
  }

  /**
   * Resolves once the channel is subscribed; `undefined` (nothing to await) once it is.
   *
   * @throws LockBackendError when Redis cannot be reached within the command timeout
   */
  subscribe(): Promise<void> | undefined {
    if (this.ready && !this.closed) return undefined;
    if (this.closed) {
      return Promise.reject(new LockBackendError('redis', 'subscribe', 'the backend is closed'));
    }
    this.subscribed ??= this.doSubscribe().catch((error: unknown) => {
      this.subscribed = undefined;
      throw error;
    });
    return this.subscribed;
  }

  /** Closes the subscriber connection and drops every listener. */
  async close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
    await this.connection?.close();
  }

  private async doSubscribe(): Promise<void> {
    if (!this.connection) {
      const client = this.createClient();
      client.on('message', (channel: string, token: string) => this.deliver(channel, token));
      this.connection = new RedisConnection(client, true, this.commandTimeout);
    }
    await this.connection.run('subscribe', (client) => client.subscribe(this.channel));
    this.ready = true;
  }

  private deliver(channel: string, token: string): void {
    if (channel !== this.channel) return;
    const set = this.listeners.get(token);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener();
      } catch {
        // A wake-up is a hint; one failing listener must not starve the others.
      }
    }
  }
}
