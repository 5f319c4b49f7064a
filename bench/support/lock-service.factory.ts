import 'reflect-metadata';
import type { INestApplicationContext, LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type {
  DistributedLockModuleOptions,
  LockBackendConfig,
  LockService,
} from 'nestjs-distributed-lock';
import type { BackendKind, BenchEnv, BenchTopology } from '../peers/lock-adapter.interface';
import { Library, loadLibrary } from './library.loader';

/** Backend tuning of the fault scenarios, ms; the values in force are reported as the bounds. */
export interface FaultTuning {
  readonly commandTimeout: number;
  /** Redis only. */
  readonly claimWindow: number;
  /** etcd only. */
  readonly sessionTtl: number;
}

/** A `LockService` of its own Nest application context (own connections, own etcd session). */
export interface OpenLockService {
  readonly lib: Library;
  readonly locks: LockService;
  close(): Promise<void>;
}

/** The module's backend config of `kind` on the run's servers, with `options` of that backend. */
export function backendConfig(
  kind: BackendKind,
  env: BenchEnv,
  options: Readonly<Record<string, number>> = {},
): LockBackendConfig {
  switch (kind) {
    case 'redis':
      return { type: 'redis', url: env.redisUrl, ...options };
    case 'etcd':
      return { type: 'etcd', hosts: env.etcdHost, ...options };
    case 'memory':
      return { type: 'memory', ...options };
  }
}

/**
 * The module's backend config on the run's `topology`, at the backend's defaults: Redis through
 * Sentinel (`{ sentinels, name }`), Redis Cluster (`{ cluster }`) or Redlock over the independent
 * masters (`{ urls }`).
 */
export function topologyConfig(topology: BenchTopology, env: BenchEnv): LockBackendConfig {
  switch (topology) {
    case 'redis-sentinel':
      if (!env.sentinel) throw new Error('the Sentinel topology was not started');
      return { type: 'redis', sentinels: env.sentinel.sentinels, name: env.sentinel.name };
    case 'redis-cluster':
      if (!env.cluster) throw new Error('the Redis Cluster was not started');
      return { type: 'redis', cluster: env.cluster };
    case 'redlock-5':
      if (!env.redlockUrls) throw new Error('the Redlock masters were not started');
      return { type: 'redlock', urls: env.redlockUrls };
  }
}

/** A Nest application context of the built library's `DistributedLockModule.forRoot(options)`. */
export async function createLockContext(
  options: DistributedLockModuleOptions,
  logger: false | LogLevel[],
): Promise<INestApplicationContext> {
  const lib = loadLibrary();
  return NestFactory.createApplicationContext(lib.DistributedLockModule.forRoot(options), {
    logger,
    abortOnError: false,
  });
}

/**
 * Opens our library as an application would (`DistributedLockModule.forRoot` with a backend
 * config), so that a fault scenario can choose `wait` per call, which the contender adapters fix.
 */
export async function openLockService(
  backend: 'redis' | 'etcd',
  env: BenchEnv,
  tuning: FaultTuning,
): Promise<OpenLockService> {
  const lib = loadLibrary();
  const options: Record<string, number> =
    backend === 'redis'
      ? { commandTimeout: tuning.commandTimeout, claimWindow: tuning.claimWindow }
      : { commandTimeout: tuning.commandTimeout, sessionTtl: tuning.sessionTtl };
  const app = await createLockContext({ backend: backendConfig(backend, env, options) }, ['error']);
  return { lib, locks: app.get(lib.LockService), close: () => app.close() };
}
