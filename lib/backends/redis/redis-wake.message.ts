import type { BackendHandoff } from '../lock-backend.interface';
import type { WakeListener, WakeRegistry } from '../wake.registry';

/** A wake-up message: "<attempt>|<claim ms>|<fencing>|<token>" (attempt 0: no offer). */
const MESSAGE = /^(\d+)\|(\d+)\|(\d+)\|([\s\S]*)$/;
/** A re-check hint: "r|<ms>|<token>" (the waiter ahead was just handed the lock for <ms>). */
const RECHECK = /^r\|(\d+)\|([\s\S]*)$/;

/**
 * Wakes the listeners a message of the scripts' handOff names (see redis.scripts.ts), with the
 * handoff it offers when there is one. Messages for tokens nobody here listens to are dropped.
 */
export function deliverWakeMessage(listeners: WakeRegistry, message: string): void {
  const parsed = MESSAGE.exec(message);
  if (!parsed) {
    const hint = RECHECK.exec(message);
    if (hint && listeners.has(hint[2])) listeners.wake(hint[2], undefined, Number(hint[1]));
    return;
  }
  const token = parsed[4];
  if (!listeners.has(token)) return;
  const attempt = Number(parsed[1]);
  const fencing = Number(parsed[3]);
  const handoff: BackendHandoff | undefined =
    attempt > 0 && Number.isSafeInteger(fencing)
      ? { attempt, fencingTokens: [fencing], ttl: Number(parsed[2]) }
      : undefined;
  listeners.wake(token, handoff);
}

/**
 * Wake-up channels of one backend instance, as the backend uses them: one channel for a single
 * server, one per hash slot on Redis Cluster.
 */
export interface RedisWakeChannels {
  /** Number of tokens with at least one listener. */
  readonly listenerCount: number;
  /** The channel a waiter on a key of `slot` names in its queue entry. */
  channelOf(slot: number): string;
  /**
   * Makes sure wake-ups for `slot` will be heard until at least `until` (a `performance.now()`
   * time). Resolves once the channel is subscribed when a waiter must wait for that (the first
   * one); `undefined` when nothing needs awaiting.
   *
   * @throws LockBackendError when the subscription cannot be made within the command timeout
   */
  subscribe(slot: number, until: number): Promise<void> | undefined;
  /** Whether wake-ups published for `slot` now will arrive. */
  live(slot: number): boolean;
  /** Calls `listener` on every wake-up of `token` until the returned function is called. */
  on(token: string, listener: WakeListener): () => void;
  /** Closes the subscriber connections and drops every listener. */
  close(): Promise<void>;
}
