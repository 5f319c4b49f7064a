import 'reflect-metadata';
import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { DistributedLockModuleOptions, LockService } from 'nestjs-distributed-lock';
import type { BenchEnv } from '../peers/lock-adapter.interface';
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
  const config: DistributedLockModuleOptions['backend'] =
    backend === 'redis'
      ? {
          type: 'redis',
          url: env.redisUrl,
          commandTimeout: tuning.commandTimeout,
          claimWindow: tuning.claimWindow,
        }
      : {
          type: 'etcd',
          hosts: env.etcdHost,
          commandTimeout: tuning.commandTimeout,
          sessionTtl: tuning.sessionTtl,
        };
  const app: INestApplicationContext = await NestFactory.createApplicationContext(
    lib.DistributedLockModule.forRoot({ backend: config }),
    { logger: ['error'], abortOnError: false },
  );
  return { lib, locks: app.get(lib.LockService), close: () => app.close() };
}
