import { EtcdFloor } from '../floors/etcd.floor';
import { AsyncMutexFloor } from './async-mutex.adapter';
import { RedisFloor } from '../floors/redis.floor';
import { Etcd3LockAdapter } from './etcd3-lock.adapter';
import type {
  AdapterInfo,
  BackendKind,
  BenchEnv,
  BenchTopology,
  LockAdapter,
} from './lock-adapter.interface';
import { OursAdapter } from './ours.adapter';
import { RedisSemaphoreAdapter } from './redis-semaphore.adapter';
import { REDLOCK, RedlockAdapter, SESAME_REDLOCK } from './redlock.adapter';

/** Every contender of a run, in report order, with how to create it (in any process). */
interface Entry {
  readonly id: string;
  readonly backend: BackendKind;
  readonly kind: AdapterInfo['kind'];
  readonly singleProcess?: boolean;
  readonly topology?: BenchTopology;
  readonly create: (env: BenchEnv) => Promise<LockAdapter>;
}

const ENTRIES: readonly Entry[] = [
  {
    id: 'floor/redis-poll',
    backend: 'redis',
    kind: 'floor',
    create: (env) => RedisFloor.create(env, 'polling'),
  },
  {
    id: 'floor/redis-push',
    backend: 'redis',
    kind: 'floor',
    create: (env) => RedisFloor.create(env, 'push'),
  },
  {
    id: 'ours/redis',
    backend: 'redis',
    kind: 'ours',
    create: (env) => OursAdapter.create('redis', env),
  },
  {
    id: 'ours/redis-sentinel',
    backend: 'redis',
    kind: 'ours',
    topology: 'redis-sentinel',
    create: (env) => OursAdapter.onTopology('redis-sentinel', env),
  },
  {
    id: 'ours/redis-cluster',
    backend: 'redis',
    kind: 'ours',
    topology: 'redis-cluster',
    create: (env) => OursAdapter.onTopology('redis-cluster', env),
  },
  {
    id: 'ours/redlock-5',
    backend: 'redis',
    kind: 'ours',
    topology: 'redlock-5',
    create: (env) => OursAdapter.onTopology('redlock-5', env),
  },
  {
    id: 'redlock/default',
    backend: 'redis',
    kind: 'peer',
    create: (env) => RedlockAdapter.create(REDLOCK, env, false),
  },
  {
    id: 'redlock/tuned',
    backend: 'redis',
    kind: 'peer',
    create: (env) => RedlockAdapter.create(REDLOCK, env, true),
  },
  {
    id: 'sesame-redlock/default',
    backend: 'redis',
    kind: 'peer',
    create: (env) => RedlockAdapter.create(SESAME_REDLOCK, env, false),
  },
  {
    id: 'sesame-redlock/tuned',
    backend: 'redis',
    kind: 'peer',
    create: (env) => RedlockAdapter.create(SESAME_REDLOCK, env, true),
  },
  {
    id: 'redis-semaphore/default',
    backend: 'redis',
    kind: 'peer',
    create: (env) => RedisSemaphoreAdapter.create(env, false),
  },
  {
    id: 'redis-semaphore/tuned',
    backend: 'redis',
    kind: 'peer',
    create: (env) => RedisSemaphoreAdapter.create(env, true),
  },
  {
    id: 'floor/etcd-watch',
    backend: 'etcd',
    kind: 'floor',
    create: (env) => EtcdFloor.create(env),
  },
  {
    id: 'ours/etcd',
    backend: 'etcd',
    kind: 'ours',
    create: (env) => OursAdapter.create('etcd', env),
  },
  {
    id: 'etcd3-lock/default',
    backend: 'etcd',
    kind: 'peer',
    create: (env) => Etcd3LockAdapter.create(env, false),
  },
  {
    id: 'etcd3-lock/tuned',
    backend: 'etcd',
    kind: 'peer',
    create: (env) => Etcd3LockAdapter.create(env, true),
  },
  {
    id: 'ours/memory',
    backend: 'memory',
    kind: 'ours',
    singleProcess: true,
    create: (env) => OursAdapter.create('memory', env),
  },
  {
    id: 'ours/memory+metrics',
    backend: 'memory',
    kind: 'ours',
    singleProcess: true,
    create: (env) => OursAdapter.withMetrics('memory', env),
  },
  {
    id: 'floor/async-mutex',
    backend: 'memory',
    kind: 'floor',
    singleProcess: true,
    create: () => AsyncMutexFloor.create(),
  },
];

/** Ids of every contender, in report order. */
export const ADAPTER_IDS: readonly string[] = ENTRIES.map((e) => e.id);

/** Static facts about a contender (no connection). */
export function adapterInfo(id: string): Omit<Entry, 'create'> {
  const entry = ENTRIES.find((e) => e.id === id);
  if (!entry) throw new Error(`unknown adapter "${id}"`);
  const { create: _create, ...info } = entry;
  return info;
}

/** Creates (and connects) the contender `id`. */
export function createAdapter(id: string, env: BenchEnv): Promise<LockAdapter> {
  const entry = ENTRIES.find((e) => e.id === id);
  if (!entry) throw new Error(`unknown adapter "${id}"`);
  return entry.create(env);
}
