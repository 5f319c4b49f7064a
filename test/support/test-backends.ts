import {
  EtcdLockBackend,
  LockBackend,
  MemoryLockBackend,
  RedisLockBackend,
} from 'nestjs-distributed-lock';

/**
 * A backend the shared e2e suite runs against. `connect()` returns a new client of ONE shared
 * store per suite, the way two application instances reach the same Redis or etcd; the suite
 * closes every client it connected.
 */
export interface TestBackend {
  readonly name: string;
  connect(): LockBackend;
}

/** An in-process store shared by every "instance" of a suite, standing in for a server. */
function memory(): TestBackend {
  let store: MemoryLockBackend | undefined;
  return {
    name: 'memory',
    connect: () => {
      store ??= new MemoryLockBackend();
      return sharedClient(store);
    },
  };
}

/** A client view of the shared memory store whose close() leaves the store alone. */
function sharedClient(store: MemoryLockBackend): LockBackend {
  return {
    name: store.name,
    acquire: (r) => store.acquire(r),
    extend: (r) => store.extend(r),
    release: (r) => store.release(r),
    cancel: (r) => store.cancel(r),
    inspect: (k) => store.inspect(k),
    onWake: (t, l) => store.onWake(t, l),
    close: async () => undefined,
  };
}

function env(name: string): string {
  const value = process.env[name];
  if (!value)
    throw new Error(
      `${name} is not set: run the suite with jest (its globalSetup starts the servers)`,
    );
  return value;
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

/** Every backend the shared e2e suite covers. Adding a backend is one line here. */
export const TEST_BACKENDS: readonly TestBackend[] = [
  memory(),
  { name: 'redis', connect: () => tracked(new RedisLockBackend({ url: env('REDIS_URL') })) },
  {
    name: 'etcd',
    connect: () => tracked(new EtcdLockBackend({ hosts: env('ETCD_HOSTS').split(',') })),
  },
];
