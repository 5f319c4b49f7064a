import { describeValue } from '../../engine/lock-key.validator';
import { assertKnownOptions, optionalTtl } from '../../engine/lock-options.validator';
import type { Etcd3, IOptions } from 'etcd3';

/** Default lease TTL of the backend's session, in ms. */
export const DEFAULT_ETCD_SESSION_TTL = 10_000;

/** Default time budget of one backend operation against etcd, in ms. */
export const DEFAULT_ETCD_COMMAND_TIMEOUT = 2_000;

/**
 * The client options of etcd3 1.x (its `IOptions`) other than `hosts`, mirrored here so that the
 * published types compile without etcd3 installed. The values go to etcd3 unchanged, so the
 * loosely typed ones (`object`) take what etcd3 documents.
 */
export interface EtcdClientOptions {
  /** TLS client credentials, passed to grpc-js `credentials.createSsl`. */
  readonly credentials?: {
    /** PEM of the certificate authority that signed the etcd servers' certificates. */
    readonly rootCertificate: Buffer;
    /** PEM of the client's private key, for client-certificate authentication. */
    readonly privateKey?: Buffer;
    /** PEM of the client's certificate chain, with `privateKey`. */
    readonly certChain?: Buffer;
  };
  /** grpc-js channel options, such as `{ 'grpc.keepalive_time_ms': 10_000 }`. */
  readonly grpcOptions?: object;
  /** Password authentication; `callOptions` are grpc-js call options of the token exchange. */
  readonly auth?: {
    /** etcd user name. */
    readonly username: string;
    /** That user's password. */
    readonly password: string;
    /** grpc-js call options of the token exchange. */
    readonly callOptions?: object;
  };
  /** grpc-js call options of every call, or a function of the call context returning them. */
  readonly defaultCallOptions?: object;
  /** etcd3's timeout, in ms, of establishing a connection to a host. etcd3's default: 30000. */
  readonly dialTimeout?: number;
  /** cockatiel policies: `host(hostname)` and `global`, and the watch reconnect backoff. */
  readonly faultHandling?: {
    /** The policy of calls to one host, given its name. */
    readonly host?: (hostname: string) => object;
    /** The policy wrapped around every call, across hosts. */
    readonly global?: object;
    /** The backoff between attempts to re-establish a watch. */
    readonly watchBackoff?: object;
  };
}

/** The names of {@link EtcdClientOptions}, checked at run time too (etcd3 ignores unknown ones). */
const ETCD3_OPTION_NAMES: readonly (keyof EtcdClientOptions)[] = [
  'credentials',
  'grpcOptions',
  'auth',
  'defaultCallOptions',
  'dialTimeout',
  'faultHandling',
];

/**
 * What the backend needs of an etcd3 client: an `Etcd3` instance (root namespace, not
 * `client.namespace(...)`) fits as it is.
 */
export interface EtcdClientLike {
  /** etcd3's key-value service client. */
  readonly kv: object;
  /** etcd3's lease service client. */
  readonly leaseClient: object;
  /** Starts a watch builder (etcd3's `Etcd3.watch()`). */
  watch(): unknown;
}

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
 * Connect through a client the backend creates (and closes in `close()`). The etcd3 client
 * options (`auth`, `credentials`, `grpcOptions`, `defaultCallOptions`, `faultHandling`, ...) are
 * passed through to it; any other name is rejected at construction.
 */
export interface EtcdLockBackendHostsOptions extends EtcdClientOptions, EtcdLockBackendTuning {
  /**
   * etcd endpoints `http://host:port` or `https://host:port` (all of one scheme), at least one;
   * `host:port` means `http://`.
   *
   * @throws TypeError at construction for anything else, naming it
   */
  readonly hosts: string | readonly string[];
  /** @hidden */
  readonly client?: never;
}

/** Use a client the application owns. `close()` never closes it. */
export interface EtcdLockBackendClientOptions extends EtcdLockBackendTuning {
  /** An etcd3 `Etcd3` client (root namespace). */
  readonly client: EtcdClientLike;
  /** @hidden */
  readonly hosts?: never;
}

/** Options of {@link EtcdLockBackend}: `{ hosts, ...etcd3 options }` or `{ client }`, plus tuning. */
export type EtcdLockBackendOptions = EtcdLockBackendHostsOptions | EtcdLockBackendClientOptions;

/**
 * Options after validation, times in ms.
 * @internal
 */
export interface ResolvedEtcdOptions {
  readonly client?: Etcd3;
  readonly clientOptions?: IOptions;
  /** Lease TTL asked of etcd, whole seconds. */
  readonly sessionTtlSeconds: number;
  readonly commandTimeout: number;
  /** Where the backend connects, for messages. */
  readonly endpoint: string;
}

/**
 * What etcd3 accepts as a host once it strips `http://` or `https://`: a grpc-js target. A bare
 * `host:port` is kept because etcd3 takes it too (its own default is `127.0.0.1:2379`), as plain
 * text; a missing port is refused because grpc-js would silently dial 443.
 */
const ETCD_HOST = /^(?:https?:\/\/)?(?:\[[0-9a-f:.]+\]|[a-z0-9_.-]+):(\d{1,5})$/i;

function looksLikeEtcd3(value: EtcdClientLike): value is Etcd3 {
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
 * @throws TypeError when a time is not a number of ms in (0, 2147483647], or an option is unknown
 * @internal
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
  // With `hosts`, other names are etcd3 client options; with a client of yours there are none.
  assertKnownOptions(
    options,
    hasClient
      ? ['client', 'sessionTtl', 'commandTimeout']
      : ['hosts', 'client', 'sessionTtl', 'commandTimeout', ...ETCD3_OPTION_NAMES],
    'EtcdLockBackend options',
  );
  if (hasClient) {
    if (!looksLikeEtcd3(options.client)) {
      throw new TypeError(
        'EtcdLockBackend: `client` must be an Etcd3 instance from the etcd3 package',
      );
    }
    const endpoint = clientEndpoint(options.client);
    return { client: options.client, sessionTtlSeconds, commandTimeout, endpoint };
  }
  const {
    hosts,
    sessionTtl: _ttl,
    commandTimeout: _timeout,
    client: _client,
    ...rest
  } = options as EtcdLockBackendHostsOptions;
  const list: unknown[] =
    typeof hosts === 'string' ? [hosts] : Array.isArray(hosts) ? [...(hosts as unknown[])] : [];
  if (list.length === 0) {
    throw new TypeError('EtcdLockBackend: `hosts` must be a non-empty string or array of strings');
  }
  const bad = list.findIndex((h) => typeof h !== 'string' || !validPort(ETCD_HOST.exec(h)?.[1]));
  if (bad >= 0) {
    throw new TypeError(
      `EtcdLockBackend: hosts: ${describeValue(withoutCredentials(list[bad]))} is not an etcd endpoint; expected http://host:port or https://host:port`,
    );
  }
  return {
    // The same fields as etcd3's IOptions, typed loosely in ours (see EtcdClientOptions).
    clientOptions: { ...rest, hosts: list as string[] } as IOptions,
    sessionTtlSeconds,
    commandTimeout,
    endpoint: list.map(withoutCredentials).join(', '),
  };
}

/** `http://user:secret@host:2379` as `http://***@host:2379`: messages never show a password. */
function withoutCredentials<T>(host: T): T | string {
  return typeof host === 'string' ? host.replace(/^([a-z]+:\/\/)?[^/@]*@/i, '$1***@') : host;
}

function validPort(port: string | undefined): boolean {
  return port !== undefined && Number(port) >= 1 && Number(port) <= 65_535;
}

/** The hosts a user's client was created with, as far as the client shows them. */
function clientEndpoint(client: EtcdClientLike): string {
  const hosts = (client as { options?: { hosts?: unknown } }).options?.hosts;
  const list: unknown[] = typeof hosts === 'string' ? [hosts] : Array.isArray(hosts) ? hosts : [];
  return list.length > 0 && list.every((h) => typeof h === 'string')
    ? list.map(withoutCredentials).join(', ')
    : 'etcd client';
}
