import { INestApplication, ModuleMetadata, Type } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import {
  DistributedLockModule,
  DistributedLockModuleOptions,
  LockService,
} from 'nestjs-distributed-lock';

/** Builds and initialises a Nest app importing DistributedLockModule.forRoot(options) plus `metadata`. */
export async function createLockApp(
  options: DistributedLockModuleOptions,
  metadata: ModuleMetadata = {},
): Promise<{ app: INestApplication; locks: LockService; get<T>(type: Type<T>): T }> {
  const moduleRef = await Test.createTestingModule({
    imports: [DistributedLockModule.forRoot(options), ...(metadata.imports ?? [])],
    controllers: metadata.controllers ?? [],
    providers: metadata.providers ?? [],
  }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  return { app, locks: app.get(LockService), get: (type) => app.get(type) };
}
