import { Etcd3 } from 'etcd3';
import {
  EtcdLockBackend,
  LockBackend,
  MemoryLockBackend,
  RedisLockBackend,
  RedlockLockBackend,
} from 'nestjs-distributed-lock';
import { freePort } from '../servers/server.process';
import { etcdHosts, redisUrl } from './test-env';
import { MASTERS, redlockContractBackend } from '../redlock/redlock-test.helpers';
import { startRedisMasters } from '../servers/redis-masters.topology';
import { uniqueKey } from './test-ids';
import { SentinelTopology, startSentinelTopology } from '../servers/redis-sentinel.topology';
import { RedisClusterTopology, startRedisCluster } from '../servers/redis-cluster.topology';

/**
 * A backend the shared e2e suite runs against. `connect()` returns a new client of ONE shared
 * store per suite, the way two application instances reach the same Redis or etcd; the suite
 * closes every client it connected. Every optional field is a capability: a test that needs one
 * runs only where it holds (and shows as skipped elsewhere).
 */
export interface TestBackend {
  readonly name: string;
  connect(): LockBackend;
  /**
   * Starts the servers this entry needs, once per test file, before `connect`; resolves the
   * function that stops them. Absent: the entry uses the servers of globalSetup. Call it through
   * {@link startTestBackend}, which also closes the clients before the servers stop.
   */
  start?(): Promise<() => Promise<void>>;
  /**
   * `false`: grants carry no fencing tokens and `lock.fencingToken` throws a `LockError`
   * (Redlock). Absent: one per key, strictly increasing.
   */
  readonly fencing?: false;
  /**
   * `false`: waiters are not served in arrival order; a release wakes them and they race
   * (Redlock). Absent: FIFO, the lock handed to the first waiter.
   */
  readonly fifoHandoff?: false;
}

/** A client pointed at a server that cannot be reached. */
export interface UnreachableBackend {
  readonly backend: LockBackend;
  /** The client's per-operation budget, in ms. */
  readonly commandTimeout: number;
  /** The address it points at (`127.0.0.1:<port>`), which `endpoint` must name. */
  readonly address: string;
  /** What every failure's message must name: the underlying cause, such as the refused connection. */
  readonly cause: RegExp;
}

/**
 * A backend the contract suite (test/support/lock-backend.contract.ts) runs against. Every
 * optional field is a capability: the contract runs the tests that need it only when it is set.
 */
export interface ContractBackend {
  readonly name: string;
  /** A new, independent client of one shared store, as a second application process would open. */
  connect(): LockBackend;
  /**
   * Longest time, in ms, a queued waiter whose client was closed for good can hold up the next
   * live waiter after the holder released (the margin for a loaded machine comes on top).
   */
  readonly deadWaiterBound: number;
  /**
   * Whether the store itself ends a grant that was not extended within its ttl while the
   * holder's client lives on (else grants end only with a lease, and the engine releases them at
   * their validity deadline).
   */
  readonly ttlEndsGrant: boolean;
  /** Most keys one lock may have, when the store has a limit. */
  readonly maxKeys?: number;
  /** Opens a client to a closed port on 127.0.0.1 with a small commandTimeout. */
  unreachable?(): Promise<UnreachableBackend>;
  /**
   * Ends, on the server, the lease behind the grant currently holding `key` (as a session that
   * expired would); the backend must then report the loss through `onLost`.
   */
  revokeLease?(key: string): Promise<void>;
  /** How long, in ms, closed clients still run timers of their own before the process is quiet. */
  readonly closeGrace?: number;
  /**
   * `false`: the backend issues no fencing tokens (grants carry none; Redlock). Absent: every
   * grant carries one per key, strictly increasing.
   */
  readonly fencing?: false;
  /**
   * `false`: no FIFO wait queue and no handoff in the wake-up (woken waiters race; Redlock).
   * Absent: queued waiters are served in arrival order, the lock handed over in the wake-up.
   */
  readonly fifoHandoff?: false;
  /**
   * Starts the servers this entry needs for one contract file (before `connect`); resolves the
   * function that stops them. Absent: the entry uses the servers of globalSetup.
   */
  start?(): Promise<() => Promise<void>>;
}

/** An in-process store shared by every "instance" of a suite, standing in for a server. */
function memory(options: ConstructorParameters<typeof MemoryLockBackend>[0] = {}): TestBackend {
  let store: MemoryLockBackend | undefined;
  return {
    name: 'memory',
    connect: () => {
      store ??= new MemoryLockBackend(options);
      return sharedClient(store);
    },
  };
}

/**
 * A client view of the shared memory store whose close() leaves the store alone. Optional
 * members exist only when the store has them, so `'onLost' in client` tells the truth.
 */
function sharedClient(store: MemoryLockBackend): LockBackend {
  const source: LockBackend = store;
  const onLost = source.onLost?.bind(source);
  const leaseDeadline = source.leaseDeadline?.bind(source);
  return {
    name: store.name,
    endpoint: store.endpoint,
    ping: () => store.ping(),
    acquire: (r) => store.acquire(r),
    extend: (r) => store.extend(r),
    release: (r) => store.release(r),
    cancel: (r) => store.cancel(r),
    inspect: (k) => store.inspect(k),
    onWake: (t, l) => store.onWake(t, l),
    close: async () => undefined,
    ...(onLost ? { onLost } : {}),
    ...(leaseDeadline ? { leaseDeadline } : {}),
    ...(source.maxKeys !== undefined ? { maxKeys: source.maxKeys } : {}),
  };
}

const connected: LockBackend[] = [];

/** Remembers a client so that {@link closeTestBackends} closes it. */
function tracked(backend: LockBackend): LockBackend {
  connected.push(backend);
  return backend;
}

/** Closes every client the suite connected (call in afterAll): user-owned backends stay open otherwise. */
export async function closeTestBackends(): Promise<void> {
  const all = connected.splice(0);
  await Promise.all(all.map((backend) => backend.close?.()));
}

/**
 * Starts `backend`'s own servers, if it has any (call in the beforeAll of its describe block);
 * resolves the function to call at the end of that block's afterAll: it closes every client
 * connected so far, so none is left retrying against a stopped server, then stops the servers.
 */
export async function startTestBackend(backend: TestBackend): Promise<() => Promise<void>> {
  const stop = await backend.start?.();
  return async () => {
    try {
      await closeTestBackends();
    } finally {
      await stop?.();
    }
  };
}

/**
 * New keys, one per name, that one lock may take together on every backend: on Redis Cluster
 * the keys of one lock must share a hash slot, which comes from a key's text up to its first
 * `}`, so they share a unique start ending in `}`.
 */
export function sameSlotKeys(label: string, ...names: readonly string[]): string[] {
  const tag = `{${uniqueKey(label)}}`;
  return names.map((name) => `${tag}:${name}`);
}

/**
 * An entry whose servers are a topology of its own, started once per test file by
 * {@link startTestBackend}; `client` opens one client of it.
 */
function ownServers<T extends { stop(): Promise<void> }>(
  name: string,
  startTopology: () => Promise<T>,
  client: (topology: T) => LockBackend,
  capabilities: Pick<TestBackend, 'fencing' | 'fifoHandoff'> = {},
): TestBackend {
  let topology: T | undefined;
  return {
    name,
    ...capabilities,
    start: async () => {
      const started = await startTopology();
      topology = started;
      return async () => {
        topology = undefined;
        await started.stop();
      };
    },
    connect: () => {
      if (!topology) throw new Error(`the ${name} servers are not started (startTestBackend)`);
      return tracked(client(topology));
    },
  };
}

/** Every backend the shared e2e suite covers. Adding a backend is one line here. */
export const TEST_BACKENDS: readonly TestBackend[] = [
  memory(),
  { name: 'redis', connect: () => tracked(new RedisLockBackend({ url: redisUrl() })) },
  {
    name: 'etcd',
    connect: () => tracked(new EtcdLockBackend({ hosts: etcdHosts() })),
  },
  ownServers(
    'redis-sentinel',
    startSentinelTopology,
    (t) => new RedisLockBackend({ sentinels: [...t.sentinels], name: t.masterName }),
  ),
  ownServers(
    'redis-cluster',
    () => startRedisCluster({ primaries: 3 }),
    (t) => new RedisLockBackend({ cluster: [...t.startupNodes] }),
  ),
  ownServers(
    'redlock',
    () => startRedisMasters(MASTERS),
    (t) => new RedlockLockBackend({ urls: t.urls }),
    { fencing: false, fifoHandoff: false },
  ),
];

/** Claim window of the contract's memory and Redis clients: short, so a dead waiter costs little. */
const CONTRACT_CLAIM_WINDOW = 1000;
/** Session lease of the contract's etcd clients (etcd's minimum is 2 s by default). */
const CONTRACT_ETCD_SESSION_TTL = 3000;

/** The message of a connection refused at `address`, as Node words it. */
function refused(address: string): RegExp {
  return new RegExp(`ECONNREFUSED ${address.replace(/\./g, '\\.')}`);
}

/** Revokes the etcd lease of the member that holds `key` (the lowest create revision). */
async function revokeEtcdLease(key: string): Promise<void> {
  const raw = new Etcd3({ hosts: etcdHosts() });
  try {
    const range = await raw.kv.range({
      key: Buffer.from(`${key}\u0000`),
      range_end: Buffer.from(`${key}\u0001`),
      sort_order: 'Ascend',
      sort_target: 'Create',
      limit: '1',
    });
    const holder = range.kvs[0];
    if (!holder) throw new Error(`no etcd member holds ${key}`);
    await raw.leaseClient.leaseRevoke({ ID: holder.lease });
  } finally {
    raw.close();
  }
}

/**
 * Every backend the backend contract (test/contract/lock-backend.contract.spec.ts) covers, with
 * its capabilities. Adding a backend is one entry here.
 */
export const CONTRACT_BACKENDS: readonly ContractBackend[] = [
  {
    name: 'memory',
    // Closing a client of the in-process store leaves its queue entries behind: the claim window
    // is what bounds them.
    connect: memory({ claimWindow: CONTRACT_CLAIM_WINDOW }).connect,
    deadWaiterBound: CONTRACT_CLAIM_WINDOW,
    ttlEndsGrant: true,
  },
  {
    name: 'redis',
    connect: () => new RedisLockBackend({ url: redisUrl(), claimWindow: CONTRACT_CLAIM_WINDOW }),
    deadWaiterBound: CONTRACT_CLAIM_WINDOW,
    ttlEndsGrant: true,
    unreachable: async () => {
      const commandTimeout = 500;
      const address = `127.0.0.1:${await freePort()}`;
      const backend = new RedisLockBackend({ url: `redis://${address}`, commandTimeout });
      return { backend, commandTimeout, address, cause: refused(address) };
    },
  },
  {
    name: 'etcd',
    connect: () =>
      new EtcdLockBackend({
        hosts: etcdHosts(),
        sessionTtl: CONTRACT_ETCD_SESSION_TTL,
      }),
    deadWaiterBound: CONTRACT_ETCD_SESSION_TTL,
    // One session lease per client: the engine, which owns validity, releases an expired grant.
    ttlEndsGrant: false,
    maxKeys: 32,
    unreachable: async () => {
      const commandTimeout = 1000;
      const address = `127.0.0.1:${await freePort()}`;
      const backend = new EtcdLockBackend({ hosts: [`http://${address}`], commandTimeout });
      return { backend, commandTimeout, address, cause: refused(address) };
    },
    revokeLease: revokeEtcdLease,
    // etcd3 and grpc-js keep reconnect timers for up to ~1-2 s after close.
    closeGrace: 1500,
  },
  sentinelContractBackend(),
  clusterContractBackend(),
  redlockContractBackend(),
];

/** Redis Cluster of three primaries (no replicas), started per contract file. */
function clusterContractBackend(): ContractBackend {
  let topology: RedisClusterTopology | undefined;
  return {
    name: 'redis-cluster',
    start: async () => {
      const started = await startRedisCluster({ primaries: 3 });
      topology = started;
      return () => started.stop();
    },
    connect: () => {
      if (!topology) throw new Error('the cluster topology is not started');
      return new RedisLockBackend({
        cluster: [...topology.startupNodes],
        claimWindow: CONTRACT_CLAIM_WINDOW,
      });
    },
    deadWaiterBound: CONTRACT_CLAIM_WINDOW,
    ttlEndsGrant: true,
  };
}

/** Redis through Sentinel: one primary, one replica, three sentinels, started per contract file. */
function sentinelContractBackend(): ContractBackend {
  let topology: SentinelTopology | undefined;
  return {
    name: 'redis-sentinel',
    start: async () => {
      const started = await startSentinelTopology();
      topology = started;
      return () => started.stop();
    },
    connect: () => {
      if (!topology) throw new Error('the sentinel topology is not started');
      return new RedisLockBackend({
        sentinels: [...topology.sentinels],
        name: topology.masterName,
        claimWindow: CONTRACT_CLAIM_WINDOW,
      });
    },
    deadWaiterBound: CONTRACT_CLAIM_WINDOW,
    ttlEndsGrant: true,
  };
}
