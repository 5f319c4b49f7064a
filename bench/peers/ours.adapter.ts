import type { INestApplicationContext } from '@nestjs/common';
import type {
  DistributedLockModuleOptions,
  Lock,
  LockBackend,
  LockService,
} from 'nestjs-distributed-lock';
import { loadBackendClass, loadLibrary, loadPrometheus } from '../support/library.loader';
import { Registry } from 'prom-client';
import { backendConfig, createLockContext, topologyConfig } from '../support/lock-service.factory';
import { errorMessage } from '../support/time.util';
import {
  ACQUIRE_WAIT_MS,
  BackendKind,
  BenchEnv,
  BenchTopology,
  BusyError,
  LockAdapter,
} from './lock-adapter.interface';

/** What the settings column says of a topology contender, after the module settings. */
const TOPOLOGY_SETTINGS: Readonly<Record<BenchTopology, string>> = {
  'redis-sentinel':
    "{ type: 'redis', sentinels, name }: 1 primary + 1 replica + 3 sentinels; x floor is against the single-node Redis floors of this run",
  'redis-cluster':
    "{ type: 'redis', cluster }: 3 primaries, no replicas; keys spread over the 3; x floor is against the single-node Redis floors of this run",
  'redlock-5':
    "{ type: 'redlock', urls }: 5 independent masters, quorum 3; x floor is against the single-node Redis floors of this run",
};

/** How our library got its backend in this process, per backend kind. */
type Wiring = { readonly via: 'config' } | { readonly via: 'instance'; readonly why: string };

const wiring = new Map<BackendKind, Wiring>();

function moduleOptions(
  backend: DistributedLockModuleOptions['backend'],
): DistributedLockModuleOptions {
  return { backend, wait: ACQUIRE_WAIT_MS };
}

/**
 * Whether `DistributedLockModule.forRoot({ backend: { type: kind, ... } })` is accepted by the
 * built library (the Redis and etcd config types are being wired). Probed once per process.
 */
async function probeWiring(kind: BackendKind, env: BenchEnv): Promise<Wiring> {
  const known = wiring.get(kind);
  if (known) return known;
  let result: Wiring;
  try {
    const app = await createLockContext(moduleOptions(backendConfig(kind, env)), false);
    await app.close();
    result = { via: 'config' };
  } catch (err) {
    if (kind === 'memory' || !/unknown backend type/i.test(String(err))) throw err;
    result = { via: 'instance', why: errorMessage(err) };
  }
  wiring.set(kind, result);
  return result;
}

/**
 * Our library, driven as an application would: a Nest application context with
 * `DistributedLockModule.forRoot({ backend: { type, ... } })`, then `LockService.acquire(key,
 * { ttl, wait })` and `Lock.release()`. Renewal stays on (the default).
 *
 * If the built module does not accept the `redis`/`etcd` config type yet, the adapter falls back
 * to passing a backend instance built from `dist/backends/<kind>` (the module accepts any
 * `LockBackend` instance) and says so in `note`.
 */
export class OursAdapter implements LockAdapter<Lock> {
  readonly kind = 'ours' as const;
  readonly id: string;
  readonly settings: string;
  readonly singleProcess: boolean;
  /** `LockNotAcquiredError` of the loaded library (resolved once, not per call). */
  private readonly notAcquired = loadLibrary().LockNotAcquiredError;

  private constructor(
    readonly backend: BackendKind,
    private readonly app: INestApplicationContext,
    private readonly locks: LockService,
    private readonly ownedBackend: LockBackend | undefined,
    readonly note: string | undefined,
    readonly topology?: BenchTopology,
    private readonly stopMetrics?: () => void,
  ) {
    this.id = `ours/${topology ?? backend}${stopMetrics ? '+metrics' : ''}`;
    this.singleProcess = backend === 'memory';
    const settings = `LockService.acquire(key, { ttl, wait: ${ACQUIRE_WAIT_MS} }), renewal on, module defaults`;
    this.settings = topology
      ? `${settings}; ${TOPOLOGY_SETTINGS[topology]}`
      : stopMetrics
        ? `${settings}; registerLockMetrics on a prom-client Registry (a listener on every lock event)`
        : settings;
  }

  /**
   * Our library with Prometheus metrics recorded (`registerLockMetrics`, so every lock event has
   * a listener): beside the plain contender, what observing costs, and that not observing is free.
   */
  static async withMetrics(kind: BackendKind, env: BenchEnv): Promise<OursAdapter> {
    const lib = loadLibrary();
    const app = await createLockContext(moduleOptions(backendConfig(kind, env)), ['error', 'warn']);
    const locks = app.get(lib.LockService);
    const stop = loadPrometheus().registerLockMetrics(locks, { registry: new Registry() });
    return new OursAdapter(kind, app, locks, undefined, undefined, undefined, stop);
  }

  /**
   * Our library on a multi-node Redis topology of this run, through the module's config form
   * (no fallback: these forms ship with the backends that implement them).
   */
  static async onTopology(topology: BenchTopology, env: BenchEnv): Promise<OursAdapter> {
    const lib = loadLibrary();
    const options = moduleOptions(topologyConfig(topology, env));
    const app = await createLockContext(options, ['error', 'warn']);
    return new OursAdapter('redis', app, app.get(lib.LockService), undefined, undefined, topology);
  }

  static async create(kind: BackendKind, env: BenchEnv): Promise<OursAdapter> {
    const lib = loadLibrary();
    const how = await probeWiring(kind, env);
    let backend: DistributedLockModuleOptions['backend'];
    let owned: LockBackend | undefined;
    let note: string | undefined;
    if (how.via === 'config') {
      backend = backendConfig(kind, env);
    } else {
      const Backend = kind === 'memory' ? undefined : loadBackendClass(kind);
      if (!Backend) throw new Error(`backend type '${kind}' is not available: ${how.why}`);
      const { type: _type, ...options } = backendConfig(kind, env);
      owned = new Backend(options);
      backend = owned;
      note = `module rejected { type: '${kind}' } (${how.why}); passed a ${Backend.name} instance from dist/backends/${kind} instead`;
    }
    const app = await createLockContext(moduleOptions(backend), ['error', 'warn']);
    return new OursAdapter(kind, app, app.get(lib.LockService), owned, note);
  }

  async acquire(key: string, ttl: number): Promise<Lock> {
    try {
      return await this.locks.acquire(key, { ttl, wait: ACQUIRE_WAIT_MS });
    } catch (err) {
      if (err instanceof this.notAcquired) throw new BusyError(this.id, key, err);
      throw err;
    }
  }

  async release(handle: Lock): Promise<void> {
    await handle.release();
  }

  async close(): Promise<void> {
    this.stopMetrics?.();
    await this.app.close();
    await this.ownedBackend?.close?.();
  }
}
