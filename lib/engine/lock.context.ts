import { AsyncLocalStorage } from 'node:async_hooks';
import type { Lock } from './lock.interface';

interface Frame {
  readonly parent: Frame | undefined;
  readonly lock: Lock;
}

const NONE_HELD: ReadonlyMap<string, Lock> = new Map();

/**
 * The locks held by the current async call chain, one stack per engine so that two applications
 * in one process never see each other's locks.
 */
export class LockContext {
  private readonly storage = new AsyncLocalStorage<Frame>();

  /** Runs `fn` with `lock` on top of the current chain's stack. */
  run<T>(lock: Lock, fn: () => T): T {
    return this.storage.run({ parent: this.storage.getStore(), lock }, fn);
  }

  /** The innermost lock of the chain that is still held. */
  current(): Lock | undefined {
    for (let frame = this.storage.getStore(); frame; frame = frame.parent) {
      if (frame.lock.held) return frame.lock;
    }
    return undefined;
  }

  /** For each key held somewhere up the chain, the innermost lock holding it. */
  heldKeys(): ReadonlyMap<string, Lock> {
    let frame = this.storage.getStore();
    // Most acquisitions run outside any lock: no Map for them.
    if (!frame) return NONE_HELD;
    const held = new Map<string, Lock>();
    for (; frame; frame = frame.parent) {
      if (!frame.lock.held) continue;
      for (const key of frame.lock.keys) if (!held.has(key)) held.set(key, frame.lock);
    }
    return held;
  }
}
