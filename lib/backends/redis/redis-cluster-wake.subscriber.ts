import { performance } from 'node:perf_hooks';
import type { Cluster } from 'ioredis';
import { LockBackendError } from '../../errors/lock-backend.error';
import type { Unsubscribe } from '../lock-backend.interface';
import { WakeListener, WakeRegistry } from '../wake.registry';
import { RedisConnection } from './redis.connection';
import { slotTag } from './redis.keys';
import { deliverWakeMessage, type RedisWakeChannels } from './redis-wake.message';

/** How long, in ms, a slot's channel stays subscribed after its last waiter's wait ended. */
const LINGER_MS = 30_000;
/** Delay between two attempts to restore dropped subscriptions, in ms. */
const HEAL_MS = 1_000;
/** The subscriber's slot map is refreshed this often, ms: a moved slot's subscription comes back soon. */
const SLOTS_REFRESH_EVERY = 1_000;
/** A `sunsubscribe` pushed by a node that lost the slot, as ioredis reports it (a queue error). */
const SUNSUBSCRIBE_PUSH = /Last reply: sunsubscribe,/;
/** Longest wait, in ms, of a slot's first waiter for its SSUBSCRIBE before it queues anyway. */
const FIRST_SUBSCRIBE_WAIT_MS = 1_000;

/** One slot's channel. */
interface SlotChannel {
  readonly slot: number;
  readonly channel: string;
  /** `subscribing`: the first SSUBSCRIBE is out; `stale`: it may have dropped since. */
  state: 'subscribing' | 'live' | 'stale';
  /** `host:port` of the slot's primary when the subscription was last confirmed. */
  owner: string | undefined;
  /** The first SSUBSCRIBE, which a slot's first waiter awaits; cleared once it settled. */
  first: Promise<void> | undefined;
  /** `performance.now()` until which a waiter may still need it. */
  until: number;
}

/**
 * Receives wake-ups for this backend instance on Redis Cluster: one shard channel per hash slot
 * waited in, `<prefix>{<slot tag>}<instance id>`, which hashes to that slot. The scripts
 * SPUBLISH to it on the slot's primary, where ioredis (`shardedSubscribers`) subscribes it, so a
 * handoff is one message from one node to one connection, and SHARDNUMSUB there counts exactly
 * this instance (the channel is its alone): a dead instance's waiters are skipped as on a single
 * server.
 *
 * A slot's channel is subscribed by its first waiter, which awaits the reply, and unsubscribed
 * {@link LINGER_MS} after the last wait in it ended, so subscriptions follow the slots waited in.
 * A subscription drops when its slot moves (the old owner pushes `sunsubscribe`, on migration
 * and failover) or its node's connection ends; ioredis re-subscribes on its next slot refresh.
 * Every slot counts as not live from such an event (or once a slot map refresh shows its primary
 * changed) until SHARDNUMSUB on the slot's current primary shows the channel again
 * (re-subscribing it when it does not), so waiters meanwhile re-check within half the claim
 * window instead of sleeping through a lost wake-up.
 *
 * A slot's first waiter waits for the SSUBSCRIBE reply at most {@link FIRST_SUBSCRIBE_WAIT_MS}:
 * right after a slot moved, ioredis may send it to the old owner and swallow the MOVED answer,
 * so the reply may never come. The waiter then queues with the slot not live, and the heal above
 * restores the subscription.
 */
export class RedisClusterWakeSubscriber implements RedisWakeChannels {
  private readonly listeners = new WakeRegistry();
  private readonly slots = new Map<number, SlotChannel>();
  private readonly channels = new Map<string, SlotChannel>();
  private connection: RedisConnection<Cluster> | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private healTimer: NodeJS.Timeout | undefined;
  private healing = false;
  private closed = false;

  /**
   * @param createClient opens the subscriber Cluster, with `shardedSubscribers` (called once)
   * @param prefix start of every channel (without `{`, which would change the hash tag)
   * @param instance this backend instance's random id
   * @param commandTimeout budget of one SSUBSCRIBE or check, in ms
   */
  constructor(
    private readonly createClient: () => Cluster,
    private readonly prefix: string,
    private readonly instance: string,
    private readonly commandTimeout: number,
  ) {}

  /** Number of tokens with at least one listener. */
  get listenerCount(): number {
    return this.listeners.size;
  }

  /** Number of slots whose channel is subscribed or being subscribed. */
  get subscribedSlots(): number {
    return this.slots.size;
  }

  channelOf(slot: number): string {
    return `${this.prefix}${slotTag(slot)}${this.instance}`;
  }

  live(slot: number): boolean {
    return !this.closed && this.slots.get(slot)?.state === 'live';
  }

  on(token: string, listener: WakeListener): Unsubscribe {
    if (this.closed) return () => undefined;
    return this.listeners.add(token, listener);
  }

  subscribe(slot: number, until: number): Promise<void> | undefined {
    if (this.closed) {
      return Promise.reject(new LockBackendError('redis', 'subscribe', 'the backend is closed'));
    }
    const known = this.slots.get(slot);
    if (known) {
      if (until > known.until) known.until = until;
      return known.first;
    }
    const entry: SlotChannel = {
      slot,
      channel: this.channelOf(slot),
      state: 'subscribing',
      owner: undefined,
      first: undefined,
      until,
    };
    this.slots.set(slot, entry);
    this.channels.set(entry.channel, entry);
    const subscribed = this.ssubscribe(entry).then(
      () => {
        entry.owner = this.ownerOf(slot);
        if (entry.state === 'subscribing') entry.state = 'live';
      },
      () => {
        // Not confirmed (timed out, refused): queue anyway, with the slot not live, and let
        // the heal restore it on the slot's current primary.
        if (this.slots.get(slot) !== entry || this.closed) return;
        entry.state = 'stale';
        this.connection?.client.refreshSlotsCache();
        this.healLater();
      },
    );
    let timer: NodeJS.Timeout | undefined;
    entry.first = Promise.race([
      subscribed,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, Math.min(this.commandTimeout, FIRST_SUBSCRIBE_WAIT_MS));
        timer.unref();
      }),
    ]).finally(() => {
      clearTimeout(timer);
      entry.first = undefined;
    });
    this.sweepLater();
    return entry.first;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.sweepTimer);
    clearTimeout(this.healTimer);
    this.listeners.clear();
    this.slots.clear();
    this.channels.clear();
    await this.connection?.close();
  }

  private open(): RedisConnection<Cluster> {
    if (this.connection) return this.connection;
    const client = this.createClient();
    client.on('smessage', (channel: string, message: string) => {
      if (this.channels.has(channel)) deliverWakeMessage(this.listeners, message);
    });
    // A subscriber connection ended (its node died or left): ioredis refreshes its slots and
    // re-subscribes; until we saw that, wake-ups of every slot may be lost.
    client.on('-node', () => this.markStale(false));
    client.on('nodeError', (error: unknown) => {
      if (error instanceof Error && SUNSUBSCRIBE_PUSH.test(error.message)) this.markStale(true);
    });
    client.on('close', () => this.markStale(false));
    // After a slot map refresh that changed something: a slot whose primary changed lost its
    // subscription, whether or not its sunsubscribe push was reported.
    client.on('subscribersReady', () => {
      let moved = false;
      for (const entry of this.slots.values()) {
        if (entry.state === 'live' && entry.owner !== this.ownerOf(entry.slot)) {
          entry.state = 'stale';
          moved = true;
        }
      }
      if (moved) this.listeners.recheckAll(0);
      this.heal();
    });
    this.connection = new RedisConnection(client, true, this.commandTimeout, SLOTS_REFRESH_EVERY);
    return this.connection;
  }

  private ssubscribe(entry: SlotChannel): Promise<unknown> {
    return this.open().run('subscribe', (client) => client.ssubscribe(entry.channel));
  }

  private markStale(refreshSlots: boolean): void {
    if (this.closed) return;
    let any = false;
    for (const entry of this.slots.values()) {
      if (entry.state !== 'stale') entry.state = 'stale';
      any = true;
    }
    if (!any) return;
    // Waiters told, before this, to sleep until a holder's ttl would miss a handoff published
    // meanwhile: each re-checks now, and is answered a retryAfter capped while the slot is not
    // live. Rare (a slot moved, a node left), so waking every local waiter once is affordable.
    this.listeners.recheckAll(0);
    // ioredis refreshes its slot map on its own only every slotsRefreshInterval (or after a
    // MOVED on this client); a moved slot's subscription comes back sooner after a refresh.
    if (refreshSlots) this.connection?.client.refreshSlotsCache();
    this.healLater();
  }

  /** Confirms (or restores) every stale slot's subscription on its slot's current primary. */
  private heal(): void {
    if (this.healing || this.closed) return;
    const stale = [...this.slots.values()].filter((e) => e.state === 'stale');
    if (stale.length === 0) return;
    this.healing = true;
    Promise.all(stale.map((entry) => this.restore(entry))).finally(() => {
      this.healing = false;
      for (const entry of this.slots.values()) if (entry.state === 'stale') this.healLater();
    });
  }

  private async restore(entry: SlotChannel): Promise<void> {
    const connection = this.connection;
    if (!connection) return;
    try {
      const cluster = connection.client;
      const owner = this.ownerOf(entry.slot);
      const node = cluster
        .nodes('master')
        .find((n) => `${n.options.host}:${n.options.port}` === owner);
      if (!node) return;
      const reply = await connection.run('subscribe', () =>
        node.call('pubsub', 'shardnumsub', entry.channel),
      );
      const count = Array.isArray(reply) ? Number(reply[1]) : 0;
      if (count < 1) await this.ssubscribe(entry);
      if (entry.state === 'stale' && this.slots.get(entry.slot) === entry) {
        entry.owner = owner;
        entry.state = 'live';
      }
    } catch {
      // Left stale: the next heal tries again.
    }
  }

  /** `host:port` of the primary that serves `slot` in the subscriber's slot map. */
  private ownerOf(slot: number): string | undefined {
    return this.connection?.client.slots[slot]?.[0];
  }

  private healLater(): void {
    if (this.healTimer || this.closed) return;
    this.healTimer = setTimeout(() => {
      this.healTimer = undefined;
      this.heal();
    }, HEAL_MS);
    this.healTimer.unref();
  }

  private sweepLater(): void {
    if (this.sweepTimer || this.closed) return;
    this.sweepTimer = setTimeout(() => {
      this.sweepTimer = undefined;
      this.sweep();
    }, LINGER_MS / 2);
    this.sweepTimer.unref();
  }

  /** Unsubscribes the channels of slots nobody has waited in for {@link LINGER_MS}. */
  private sweep(): void {
    const now = performance.now();
    for (const entry of [...this.slots.values()]) {
      if (entry.first || entry.until + LINGER_MS > now) continue;
      this.forget(entry);
      this.connection
        ?.run('unsubscribe', (client) => client.sunsubscribe(entry.channel))
        .catch(() => undefined);
    }
    if (this.slots.size > 0) this.sweepLater();
  }

  private forget(entry: SlotChannel): void {
    if (this.slots.get(entry.slot) === entry) this.slots.delete(entry.slot);
    if (this.channels.get(entry.channel) === entry) this.channels.delete(entry.channel);
  }
}
