import type { Redis } from 'ioredis';
import type { Unsubscribe } from '../lock-backend.interface';
import { LockBackendError } from '../../errors/lock-backend.error';
import { WakeListener, WakeRegistry } from '../wake.registry';
import { RedisConnection } from './redis.connection';
import { deliverWakeMessage, type RedisWakeChannels } from './redis-wake.message';

/** Delay before trying again a re-subscription that failed on a connection that stayed up. */
const RESUBSCRIBE_RETRY_MS = 1000;

/**
 * Receives wake-ups for this backend instance: one dedicated subscriber connection, subscribed
 * once to the instance's own channel, whose messages carry the token of the waiter to wake and,
 * for a single-key waiter, the lock handed to it (see handOff in redis.scripts.ts).
 *
 * Listeners live in a map keyed by waiter token and leave it on unsubscribe, so memory follows
 * the live waiters, never the lock keys ever seen.
 *
 * The subscription can drop while the command connection works (a killed or timed-out pub/sub
 * connection): messages published meanwhile are lost. {@link live} tells the backend when that
 * may be the case, so it shortens waiters' `retryAfter` instead of leaving them to sleep for a
 * holder's whole ttl while a handoff to them lapses. ioredis reconnects and re-subscribes by
 * itself; on every reconnect we also subscribe once more and count the subscription live again
 * only when that reply arrives, which proves the server registered it.
 */
export class RedisWakeSubscriber implements RedisWakeChannels {
  private readonly listeners = new WakeRegistry();
  private connection: RedisConnection<Redis> | undefined;
  private subscribing: Promise<void> | undefined;
  /** The first SUBSCRIBE succeeded; from then on acquires do not wait for the subscription. */
  private started = false;
  private isLive = false;
  /** Bumped whenever the connection closes, so a confirmation from before is not trusted. */
  private session = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  /**
   * @param createClient opens the subscriber connection (called once, on first need)
   * @param channel the pub/sub channel of this backend instance
   * @param commandTimeout budget of one SUBSCRIBE, in ms
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

  /** The instance's one channel, whatever the slot. */
  channelOf(): string {
    return this.channel;
  }

  /**
   * Whether wake-ups published now will arrive: subscribed, on a connection that has not dropped
   * since the server confirmed the subscription.
   */
  live(): boolean {
    return this.isLive && !this.closed;
  }

  /** Calls `listener` on every wake-up of `token` until the returned function is called. */
  on(token: string, listener: WakeListener): Unsubscribe {
    if (this.closed) return () => undefined;
    const unsubscribe = this.listeners.add(token, listener);
    // Subscribing early lets the first acquire find the channel ready; failures resurface there.
    if (!this.started) this.subscribe()?.catch(() => undefined);
    return unsubscribe;
  }

  /**
   * Resolves once the channel was first subscribed; `undefined` (nothing to await) after that,
   * also while a dropped subscription is being restored.
   *
   * @throws LockBackendError when Redis cannot be reached within the command timeout
   */
  subscribe(): Promise<void> | undefined {
    if (this.closed) {
      return Promise.reject(new LockBackendError('redis', 'subscribe', 'the backend is closed'));
    }
    if (this.started) return undefined;
    this.subscribing ??= this.firstSubscribe().catch((error: unknown) => {
      this.subscribing = undefined;
      throw error;
    });
    return this.subscribing;
  }

  /** Closes the subscriber connection and drops every listener. */
  async close(): Promise<void> {
    this.closed = true;
    this.isLive = false;
    clearTimeout(this.retryTimer);
    this.listeners.clear();
    await this.connection?.close();
  }

  private async firstSubscribe(): Promise<void> {
    const connection = this.open();
    const session = this.session;
    await connection.run('subscribe', (client) => client.subscribe(this.channel));
    this.started = true;
    if (session === this.session) this.isLive = true;
    // The connection dropped and may already be back: its 'ready' came before we started.
    else if (connection.client.status === 'ready') this.resubscribe();
  }

  private open(): RedisConnection<Redis> {
    if (this.connection) return this.connection;
    const client = this.createClient();
    client.on('message', (channel: string, message: string) => this.deliver(channel, message));
    client.on('close', () => {
      this.isLive = false;
      this.session++;
    });
    client.on('ready', () => {
      if (this.started) this.resubscribe();
    });
    this.connection = new RedisConnection(client, true, this.commandTimeout);
    return this.connection;
  }

  private resubscribe(): void {
    const connection = this.connection;
    if (this.closed || !connection) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const session = this.session;
    connection
      .run('subscribe', (client) => client.subscribe(this.channel))
      .then(
        () => {
          if (session === this.session && !this.closed) this.isLive = true;
        },
        () => {
          // Connected but not subscribed (a timeout, a refusal): try again later. A connection
          // that dropped instead tries again on its next 'ready'.
          if (session !== this.session || this.closed) return;
          this.retryTimer = setTimeout(() => this.resubscribe(), RESUBSCRIBE_RETRY_MS);
          this.retryTimer.unref();
        },
      );
  }

  private deliver(channel: string, message: string): void {
    if (channel === this.channel) deliverWakeMessage(this.listeners, message);
  }
}
