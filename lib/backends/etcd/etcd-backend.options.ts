import { assertKnownOptions, optionalTtl } from '../../engine/lock-options.validator';
import type { Etcd3, IOptions } from 'etcd3';

/** Default lease TTL of the backend's session, in ms. */
export const DEFAULT_ETCD_SESSION_TTL = 10_000;

/** Default time budget of one backend operation against etcd, in ms. */
export const DEFAULT_ETCD_COMMAND_TIMEOUT = 2_000;

/** Tuning shared by both ways of connecting. */
export interface EtcdLockBackendTuning {
  /**
   * TTL of the session lease, in ms, rounded UP to whole seconds (etcd speaks seconds). Every lock
   * and queue entry of this backend lives on that one lease, kept alive in the background, so this
   * is how long locks of a crashed process survive it. It does not limit how long a lock is held:
   * the per-lock `ttl` does that.
   *
   * etcd enforces a minimum lease TTL of `ceil(1.5 × election timeout)` seconds, 2 s with the
   * default `--election-timeout=1000`, and silently grants that minimum to shorter requests; the
   * backend then works with the TTL etcd actually granted.
   *
   * @default 10000
   * @throws TypeError at construction unless a number of ms in (0, 2147483647]
   */
  readonly sessionTtl?: number;
  /**
   * Time budget of each request to etcd, in ms, including the client's own retries and fail-over
   * to other hosts; when it runs out the operation rejects with a `LockBackendError`. Most
   * operations make one request; an `acquire` makes one or two (open the session lease, then one
   * transaction), twice that if the session is lost under it.
   *
   * @default 2000
   * @throws TypeError at construction unless a number of ms in (0, 2147483647]
   */
  readonly commandTimeout?: number;
}

/**
 * Connect through a client the backend creates (and closes in `close()`). Every other
 * {@link IOptions} field of etcd3 (`auth`, `credentials`, `grpcOptions`, `defaultCallOptions`,
 * `faultHandling`, ...) is passed through to it.
 */
export interface EtcdLockBackendHostsOptions
  extends Omit<IOptions, 'hosts'>, EtcdLockBackendTuning {
  /** etcd endpoints with their scheme, such as `http://127.0.0.1:2379`; at least one. */
  readonly hosts: string | readonly string[];
  readonly client?: never;
}

/** Use a client the application owns. `close()` never closes it. */
export interface EtcdLockBackendClientOptions extends EtcdLockBackendTuning {
  /** An etcd3 client (root namespace). */
  readonly client: Etcd3;
  readonly hosts?: never;
}

/** Options of {@link EtcdLockBackend}: `{ hosts, ...etcd3 options }` or `{ client }`, plus tuning. */
export type EtcdLockBackendOptions = EtcdLockBackendHostsOptions | EtcdLockBackendClientOptions;

/** Options after validation, times in ms. */
export interface ResolvedEtcdOptions {
  readonly client?: Etcd3;
  readonly clientOptions?: IOptions;
  /** Lease TTL asked of etcd, whole seconds. */
  readonly sessionTtlSeconds: number;
  readonly commandTimeout: number;
}

function looksLikeEtcd3(value: unknown): value is Etcd3 {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Partial<Record<'kv' | 'leaseClient' | 'watch', unknown>>;
  return (
    typeof candidate.kv === 'object' &&
    typeof candidate.leaseClient === 'object' &&
    typeof candidate.watch === 'function'
  );
}

/**
 * Validates the user's options.
 *
 * @throws TypeError when neither or both of `hosts` and `client` are given, or either is malformed
 * @throws TypeError when a time is not a number of ms in (0, 2147483647]
 */
export function resolveEtcdOptions(options: EtcdLockBackendOptions): ResolvedEtcdOptions {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('EtcdLockBackend: options must be an object with `hosts` or `client`');
  }
  const sessionTtl = optionalTtl(
    options.sessionTtl,
    'EtcdLockBackend: sessionTtl',
    DEFAULT_ETCD_SESSION_TTL,
  );
  const commandTimeout = optionalTtl(
    options.commandTimeout,
    'EtcdLockBackend: commandTimeout',
    DEFAULT_ETCD_COMMAND_TIMEOUT,
  );
  const sessionTtlSeconds = Math.max(1, Math.ceil(sessionTtl / 1000));
  const hasHosts = options.hosts !== undefined;
  const hasClient = options.client !== undefined;
  if (hasHosts === hasClient) {
    throw new TypeError(
      'EtcdLockBackend: pass exactly one of `hosts` (the backend creates a client) or `client`',
    );
  }
  if (hasClient) {
    // With `hosts`, other names are etcd3 client options; with a client of yours there are none.
    assertKnownOptions(
      options,
      ['client', 'sessionTtl', 'commandTimeout'],
      'EtcdLockBackend options',
    );
    if (!looksLikeEtcd3(options.client)) {
      throw new TypeError(
        'EtcdLockBackend: `client` must be an Etcd3 instance from the etcd3 package',
      );
    }
    return { client: options.client, sessionTtlSeconds, commandTimeout };
  }
  const {
    hosts,
    sessionTtl: _ttl,
    commandTimeout: _timeout,
    client: _client,
    ...rest
  } = options as EtcdLockBackendHostsOptions;
  const list =
    typeof hosts === 'string'
      ? [hosts]
      : Array.isArray(hosts)
        ? [...(hosts as readonly unknown[])]
        : [];
  if (list.length === 0 || list.some((host) => typeof host !== 'string' || host.trim() === '')) {
    throw new TypeError(
      'EtcdLockBackend: `hosts` must be a non-empty string or array of non-empty strings',
    );
  }
  return { clientOptions: { ...rest, hosts: list as string[] }, sessionTtlSeconds, commandTimeout };
}
