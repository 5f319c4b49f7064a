import type * as Etcd3Module from 'etcd3';

/** The runtime exports of the etcd3 package that this backend uses. */
export type Etcd3Exports = typeof Etcd3Module;

let cached: Etcd3Exports | undefined;

/**
 * Loads the optional `etcd3` peer dependency on first use, so that importing the backend (or the
 * library) never requires it.
 *
 * @throws Error with an install hint when etcd3 is not installed
 */
export function loadEtcd3(): Etcd3Exports {
  if (cached) return cached;
  try {
    // A static import would make etcd3 mandatory for every user of the library.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    cached = require('etcd3') as Etcd3Exports;
    return cached;
  } catch (err) {
    throw new Error(
      'EtcdLockBackend needs the optional peer dependency "etcd3": run `npm i etcd3`',
      {
        cause: err,
      },
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
