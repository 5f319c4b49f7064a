import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { LockBackend } from 'nestjs-distributed-lock';

/** The public API of the built library (`dist/index.js`). */
export type Library = typeof import('nestjs-distributed-lock');

/** A backend class of the built library, constructed from its options object. */
export type BackendClass = new (options: object) => LockBackend;

const load = createRequire(__filename);

/**
 * Where the built library is loaded from: `BENCH_LIB_DIR` (the orchestrator points it at a
 * snapshot of `dist/` taken at start, so a concurrent `npm run build` cannot pull files away
 * mid-run), else the package's own name, which Node resolves through `exports` to `dist/`.
 */
export function libraryDir(): string {
  return process.env.BENCH_LIB_DIR ?? dirname(load.resolve('nestjs-distributed-lock'));
}

/** Loads the built library. */
export function loadLibrary(): Library {
  return load(process.env.BENCH_LIB_DIR ?? 'nestjs-distributed-lock') as Library;
}

/**
 * The built backend class for `kind` from `dist/backends/<kind>` (not public API), or undefined
 * when it is not there. Used only when the module does not accept the config object yet.
 */
export function loadBackendClass(kind: 'redis' | 'etcd'): BackendClass | undefined {
  try {
    const mod = load(join(libraryDir(), 'backends', kind)) as Record<string, unknown>;
    const ctor = mod[kind === 'redis' ? 'RedisLockBackend' : 'EtcdLockBackend'];
    return typeof ctor === 'function' ? (ctor as BackendClass) : undefined;
  } catch {
    return undefined;
  }
}

/** The built `nestjs-distributed-lock/prometheus` entry, from the same place as the library. */
export function loadPrometheus(): typeof import('nestjs-distributed-lock/prometheus') {
  return load(
    join(libraryDir(), 'prometheus'),
  ) as typeof import('nestjs-distributed-lock/prometheus');
}
