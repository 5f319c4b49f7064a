import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import {
  HealthIndicatorService,
  type HealthIndicatorResult,
  type HealthIndicatorStatus,
} from '@nestjs/terminus';
import { monotonicNow } from '../engine/clock';
import { errorMessage } from '../errors/error.message';
import { LockError } from '../errors/lock.error';
import { LockService } from '../service/lock.service';
import { LockHealthCheckOptions, resolveLockHealthOptions } from './lock-health.options';

/**
 * What a lock health check reports under its key, next to Terminus' `status` (`up` or `down`).
 */
export type LockHealthDetails = {
  /** Name of the backend: `memory`, `redis`, `etcd`, `redlock`, or a custom backend's own. */
  backend: string;
  /**
   * Where the backend connects (`127.0.0.1:6379`, an etcd host list), when it says; never
   * credentials (a `user:password@` part is removed).
   */
  endpoint?: string;
  /** How long the check took, in whole ms: until its answer, or until it gave up. */
  latencyMs: number;
  /** Why the check failed, naming the backend, its endpoint and the cause; only when `down`. */
  message?: string;
};

/**
 * The reserved part of the key a health check locks. Each check appends a random v4 UUID: its
 * key can collide neither with an application's keys (they would have to guess the UUID) nor
 * with a check of another replica, or of this one, running at the same moment. The module's
 * `keyPrefix` comes first, as for any key (`lock:nestjs-distributed-lock:health:<uuid>`).
 */
const HEALTH_KEY_NAME = 'nestjs-distributed-lock:health:';

/** One part of the check, named in the message when the timeout ends it. */
type Step = 'ping' | 'acquire' | 'release';

/**
 * A `@nestjs/terminus` (11.x) health indicator for the lock backend. Each check, within a
 * timeout (default 1000 ms), does at once:
 *
 * - a **ping** of the backend: its `ping` (Redis `PING`, an etcd read), else a read of one key;
 * - a real **acquire and release** through `LockService`, one try (`wait: 0`), without renewal,
 *   on a reserved key of its own (`nestjs-distributed-lock:health:` plus a random UUID, after the
 *   module's `keyPrefix`), with a ttl of 10 s or twice the timeout, whichever is longer.
 *
 * It reports `up` when both succeed, `down` when either fails or the timeout ends first, with the
 * backend's name, its endpoint when known and the latency in ms (see {@link LockHealthDetails}).
 * A backend that is down or frozen reports `down` when the timeout ends at the latest: the check
 * never waits for it. A grant that arrives after the timeout is not leaked: the engine drops it
 * and releases it (the check's signal is aborted), and failing that, it ends with its ttl.
 *
 * Checks go through `LockService`, so they appear wherever its locks do (lifecycle events,
 * metrics, the testing kit's grants), and are refused, so `down`, once the application shuts down.
 *
 * ```ts
 * @Module({
 *   imports: [TerminusModule, DistributedLockModule.forRoot({ backend: { type: 'redis', url } })],
 *   controllers: [HealthController],
 *   providers: [LockHealthIndicator],
 * })
 * export class AppModule {}
 *
 * @Controller('health')
 * export class HealthController {
 *   constructor(
 *     private readonly health: HealthCheckService,
 *     private readonly lockHealth: LockHealthIndicator,
 *   ) {}
 *
 *   @Get()
 *   @HealthCheck()
 *   check() {
 *     return this.health.check([() => this.lockHealth.isHealthy('lock')]);
 *   }
 * }
 * ```
 *
 * Needs `TerminusModule` (which provides `HealthIndicatorService`) and `DistributedLockModule`
 * (global by default) in the module that provides it.
 */
@Injectable()
export class LockHealthIndicator {
  /** Built by Nest: list the class in a module's `providers`. */
  constructor(
    private readonly locks: LockService,
    private readonly health: HealthIndicatorService,
  ) {}

  /**
   * Checks the lock backend once (see {@link LockHealthIndicator}) and reports it under `key`.
   * Never rejects for a backend failure or a timeout: those are a `down` result, which makes
   * Terminus answer 503.
   *
   * @param key the name of this indicator in the health check's answer, such as `'lock'`
   * @param options `timeout` in ms (default 1000)
   * @returns `{ [key]: { status: 'up' | 'down', backend, endpoint?, latencyMs, message? } }`
   * @throws TypeError for an unknown option or a timeout that is not a number of ms in
   *   (0, 2147483647], before anything is sent
   */
  async isHealthy<const Key extends string>(
    key: Key,
    options?: LockHealthCheckOptions,
  ): Promise<HealthIndicatorResult<Key, HealthIndicatorStatus, LockHealthDetails>> {
    const { timeout, ttl } = resolveLockHealthOptions(options);
    const session = this.health.check(key);
    const backend = this.locks.lockRuntime.backend;
    const endpoint =
      backend.endpoint === undefined ? undefined : withoutCredentials(backend.endpoint);
    const identity =
      endpoint === undefined ? { backend: backend.name } : { backend: backend.name, endpoint };
    const where = `${backend.name} backend${endpoint === undefined ? '' : ` at ${endpoint}`}`;
    const started = monotonicNow();
    const latency = (): number => Math.round(monotonicNow() - started);

    const pending = new Set<Step>();
    const step = <T>(name: Step, run: () => Promise<T>): Promise<T> => {
      pending.add(name);
      let promise: Promise<T>;
      try {
        promise = run();
      } catch (err) {
        promise = Promise.reject(err);
      }
      return promise.finally(() => pending.delete(name));
    };
    // Aborted when the check ends, however it ends: a grant answered after that is dropped by
    // the engine, which releases it, rather than handed to a check that no longer waits.
    const probe = new AbortController();
    const pinged = step('ping', () => this.locks.checkBackend());
    const cycled = step('acquire', () =>
      this.locks.tryAcquire(HEALTH_KEY_NAME + randomUUID(), {
        wait: 0,
        ttl,
        renew: false,
        signal: probe.signal,
        // One label in events and metrics for every check, whatever its random key.
        name: 'health',
      }),
    ).then((lock) => {
      if (!lock) {
        throw new LockError(`${where} reported the health check's own key busy`);
      }
      // Released whenever the grant arrives, also after the timeout.
      return step('release', () => lock.release());
    });

    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeout);
      // A health check in flight must not keep a process that is otherwise done alive.
      timer.unref();
    });
    try {
      const outcome = await Promise.race([Promise.all([pinged, cycled]), timedOut]);
      if (outcome === 'timeout') {
        const steps = [...pending].join(', ') || 'answer';
        return session.down({
          ...identity,
          latencyMs: latency(),
          message: `${where} did not answer the health check within ${timeout} ms (${steps} pending)`,
        });
      }
      return session.up({ ...identity, latencyMs: latency() });
    } catch (err) {
      // A backend error's message names the backend's endpoint as the backend gives it.
      return session.down({
        ...identity,
        latencyMs: latency(),
        message: withoutCredentials(errorMessage(err)),
      });
    } finally {
      clearTimeout(timer);
      probe.abort();
    }
  }
}

/**
 * An endpoint without `user:password@` parts: the built-in backends never put credentials there,
 * but a custom backend's endpoint is shown as it says, and a health answer may be public.
 */
function withoutCredentials(text: string): string {
  // `scheme://userinfo@host`: the userinfo runs to the last `@` before the host, and may itself
  // hold `@`, `/` or `:`; then `user:pass@host` without a scheme.
  return text
    .replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s,]*@(?=[^\s,@]*(?:[\s,]|$))/gi, '$1')
    .replace(/(^|[\s,(])[^\s,/@():]+:[^\s,@]*@/g, '$1');
}
