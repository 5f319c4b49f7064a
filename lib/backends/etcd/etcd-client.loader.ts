import type * as Etcd3Module from 'etcd3';
import type { Etcd3, IOptions } from 'etcd3';

/** The runtime exports of the etcd3 package. */
export type Etcd3Exports = typeof Etcd3Module;

let cached: Etcd3Exports | undefined;

/**
 * Loads the optional `etcd3` peer dependency on first use, so that importing the backend (or the
 * library) never requires it.
 *
 * @throws Error with an install hint when etcd3 is not installed
 */
export function loadEtcd3(): Etcd3Exports {
  try {
    // A static import would make etcd3 mandatory for every user of the library.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    cached ??= require('etcd3') as Etcd3Exports;
    return cached;
  } catch (err) {
    throw new Error(
      'EtcdLockBackend needs the optional peer dependency "etcd3": run `npm i etcd3`',
      { cause: err },
    );
  }
}

/** Like {@link loadEtcd3} but `undefined` instead of throwing (for a user-supplied client). */
export function tryLoadEtcd3(): Etcd3Exports | undefined {
  try {
    return loadEtcd3();
  } catch {
    return undefined;
  }
}

/**
 * A client for the backend to own: watch reconnects back off from 100 ms to 2 s (etcd3: up to
 * 30 s, during which waiters would hear of no release), unless the options set their own.
 */
export function createEtcdClient(etcd3: Etcd3Exports, options: IOptions): Etcd3 {
  return new etcd3.Etcd3({
    ...options,
    faultHandling: { watchBackoff: backoff(0), ...options.faultHandling },
  });
}

type Backoff = { readonly duration: number; next(): Backoff };

/** etcd3 starts from `seed.next()`: the seed's own duration is never used. */
function backoff(step: number): Backoff {
  return {
    duration: Math.min(2_000, 100 * 2 ** Math.max(0, step - 1)),
    next: () => backoff(Math.min(step + 1, 6)),
  };
}
