import { BeforeApplicationShutdown, Logger, OnApplicationShutdown } from '@nestjs/common';
import type { LockBackend } from '../backends/lock-backend.interface';
import type { AcquireOptions } from '../engine/acquire-options.interface';
import { LockEngine } from '../engine/lock.engine';
import type { Lock } from '../engine/lock.interface';
import type { LockKeys } from '../engine/lock-key.validator';
import type { LockService } from '../service/lock.service';

/** One lock the application under test was granted. */
export interface LockGrantRecord {
  /** The keys, in canonical order, without the key prefix. */
  readonly keys: readonly string[];
  /** The ttl it was taken with, in ms. */
  readonly ttl: number;
  /** One fencing token per key. */
  readonly fencingTokens: readonly number[];
  /** Whether it was released or lost by now. */
  readonly released: boolean;
}

/**
 * What a test sees of the locks of the application under test (`DistributedLockTestingModule`):
 * which locks it was granted, and a second "instance" on the same backend to make keys busy.
 *
 * Time: the engine and the memory backend read `performance.now()` and use timers, so jest's
 * fake timers (`jest.useFakeTimers()`, then `jest.advanceTimersByTimeAsync(ms)`) move ttls,
 * renewals and waits.
 */
export class LockTesting implements BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly records: { lock: Lock; ttl: number }[] = [];
  private readonly other: LockEngine;
  private readonly stopRecording: () => void;

  /** Built by `DistributedLockTestingModule`; inject it with `moduleRef.get(LockTesting)`. */
  constructor(
    locks: LockService,
    private readonly backend: LockBackend,
  ) {
    const { defaults } = locks.lockRuntime;
    this.stopRecording = locks.onGrant((lock, ttl) => this.records.push({ lock, ttl }));
    this.other = new LockEngine(backend, { ...defaults, wait: 0 }, new Logger('LockTesting'));
  }

  /** Every lock granted to the application so far, oldest first (reentrant handles excluded). */
  grants(): LockGrantRecord[] {
    return this.records.map(({ lock, ttl }) => ({
      keys: lock.keys,
      ttl,
      fencingTokens: lock.fencingTokens,
      released: !lock.held,
    }));
  }

  /** Whether the application was granted a lock covering `key` (held now or earlier). */
  wasLocked(key: string): boolean {
    return this.records.some(({ lock }) => lock.keys.includes(key));
  }

  /** Whether the application holds a lock covering `key` right now. */
  isHeld(key: string): boolean {
    return this.records.some(({ lock }) => lock.held && lock.keys.includes(key));
  }

  /**
   * Takes `keys` as another instance of the application would, so the application finds them
   * busy until the returned lock is released. Not recorded in {@link grants}. Waits up to
   * `options.wait` ms (default 0: one try).
   *
   * @throws LockNotAcquiredError when the application (or an earlier `hold`) holds them
   */
  hold(keys: LockKeys, options: AcquireOptions = {}): Promise<Lock> {
    return this.other.acquire(keys, options, 'wait');
  }

  /** Forgets the grants recorded so far. */
  clear(): void {
    this.records.length = 0;
  }

  /** Called by Nest: releases what {@link hold} still holds. */
  async beforeApplicationShutdown(): Promise<void> {
    this.stopRecording();
    await this.other.shutdown(0);
  }

  /** Called by Nest: closes the kit's memory backend after the application's locks are gone. */
  async onApplicationShutdown(): Promise<void> {
    await this.backend.close?.();
  }
}
