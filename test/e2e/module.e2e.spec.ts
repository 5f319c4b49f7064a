import { Injectable, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import {
  DistributedLockModule,
  DistributedLockModuleOptions,
  DistributedLockOptionsFactory,
  LockLostError,
  LockService,
  MemoryLockBackend,
} from 'nestjs-distributed-lock';
import { DISTRIBUTED_LOCK_RUNTIME } from '../../lib/module/distributed-lock.constants';
import type { LockRuntime } from '../../lib/module/lock-runtime.factory';
import { sleep } from '../support/async.helpers';
import { ObservedBackend } from '../support/observed.backend';
import { createLockApp } from '../support/test-app';
import { closeTestBackends, startTestBackend, TEST_BACKENDS } from '../support/test-backends';
import { uniqueKey } from '../support/test-ids';

async function bootstrap(imports: Parameters<typeof Test.createTestingModule>[0]['imports']) {
  const moduleRef = await Test.createTestingModule({ imports }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  return app;
}

describe('DistributedLockModule options', () => {
  it('works with no options on the embedded memory backend', async () => {
    const app = await bootstrap([DistributedLockModule.forRoot()]);
    const locks = app.get(LockService);
    // Internal token: the public API does not expose the backend, the module's runtime does.
    expect(app.get<LockRuntime>(DISTRIBUTED_LOCK_RUNTIME).backend.name).toBe('memory');
    const lock = await locks.acquire('no-options');
    expect(lock.expiresAt - Date.now()).toBeGreaterThan(25_000); // default ttl 30 s
    await lock.release();
    await app.close();
  });

  it.each<[string, DistributedLockModuleOptions, RegExp]>([
    ['ttl 0', { ttl: 0 }, /ttl must be a number of milliseconds > 0 and <= 2147483647, got 0/],
    ['ttl Infinity', { ttl: Infinity }, /ttl/],
    ['negative wait', { wait: -5 }, /wait must be/],
    [
      'unknown backend type',
      { backend: { type: 'mongo' } as unknown as DistributedLockModuleOptions['backend'] },
      /unknown backend type "mongo"/,
    ],
    [
      'unknown option',
      { tll: 5 } as unknown as DistributedLockModuleOptions,
      /unknown option "tll"/,
    ],
    ['bad key prefix', { keyPrefix: 5 as unknown as string }, /keyPrefix/],
  ])('fails at bootstrap on %s', async (_label, options, message) => {
    await expect(bootstrap([DistributedLockModule.forRoot(options)])).rejects.toThrow(message);
  });

  it('supports forRootAsync with useFactory and inject', async () => {
    @Injectable()
    class Config {
      ttl = 1234;
    }
    @Module({ providers: [Config], exports: [Config] })
    class ConfigModule {}
    const app = await bootstrap([
      DistributedLockModule.forRootAsync({
        imports: [ConfigModule],
        inject: [Config],
        useFactory: async (config: Config) => ({ ttl: config.ttl, keyPrefix: 'async:' }),
      }),
    ]);
    const lock = await app.get(LockService).acquire('a');
    expect(lock.expiresAt - Date.now()).toBeLessThanOrEqual(1234);
    await lock.release();
    await app.close();
  });

  it('supports forRootAsync with useClass and useExisting', async () => {
    const backend = new MemoryLockBackend();
    @Injectable()
    class Options implements DistributedLockOptionsFactory {
      createDistributedLockOptions(): DistributedLockModuleOptions {
        return { backend };
      }
    }
    @Module({ providers: [Options], exports: [Options] })
    class OptionsModule {}
    const first = await bootstrap([DistributedLockModule.forRootAsync({ useClass: Options })]);
    const second = await bootstrap([
      DistributedLockModule.forRootAsync({ imports: [OptionsModule], useExisting: Options }),
    ]);
    const lock = await first.get(LockService).acquire('shared');
    expect(await second.get(LockService).isLocked('shared')).toBe(true);
    await lock.release();
    await first.close();
    await second.close();
  });

  it('rejects forRootAsync without exactly one source', () => {
    expect(() => DistributedLockModule.forRootAsync({})).toThrow(/exactly one/);
  });

  it('is global by default and can be made local', async () => {
    @Injectable()
    class Consumer {
      constructor(readonly locks: LockService) {}
    }
    @Module({ providers: [Consumer] })
    class FeatureModule {}
    const app = await bootstrap([DistributedLockModule.forRoot(), FeatureModule]);
    expect(app.get(Consumer).locks).toBeInstanceOf(LockService);
    await app.close();
    await expect(
      bootstrap([DistributedLockModule.forRoot({ isGlobal: false }), FeatureModule]),
    ).rejects.toThrow(/LockService/);
  });
});

describe.each(TEST_BACKENDS)('shutdown on $name', (testBackend) => {
  let stopBackend: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    stopBackend = await startTestBackend(testBackend);
  });
  afterAll(async () => {
    await stopBackend?.();
  });

  it('releases held locks on app.close() and leaves a backend it did not create open', async () => {
    const backend = new ObservedBackend(testBackend.connect());
    const observer = await createLockApp({ backend: testBackend.connect() });
    // No grace, else close() waits its 10 s for this lock held by hand (the grace has own tests).
    const { app, locks } = await createLockApp({ backend, shutdownGrace: 0 });
    const key = uniqueKey('shutdown');
    const lock = await locks.acquire(key, { ttl: 60_000 });
    await app.close();
    expect(lock.held).toBe(false);
    expect(lock.signal.aborted).toBe(true);
    expect(lock.signal.reason).toBeInstanceOf(LockLostError);
    await expect(lock.release()).rejects.toBeInstanceOf(LockLostError);
    expect(await observer.locks.isLocked(key)).toBe(false);
    expect(backend.closed).toBe(0);
    // The backend still works for its owner.
    expect((await backend.inspect(`lock:${key}`)).held).toBe(false);
    await observer.app.close();
    await backend.close();
  });

  it('rejects pending waits at shutdown instead of leaving them hanging', async () => {
    const observer = await createLockApp({ backend: testBackend.connect() });
    const { app, locks } = await createLockApp({ backend: testBackend.connect() });
    const key = uniqueKey('shutdown-wait');
    const holder = await observer.locks.acquire(key);
    const waiting = locks.acquire(key, { wait: 30_000 }).catch((e: unknown) => e);
    await sleep(30);
    await app.close();
    expect(await waiting).toBeInstanceOf(Error);
    await holder.release();
    await observer.app.close();
  });
});

describe('shutdown of an owned backend', () => {
  it('closes a backend the module created', async () => {
    const closeSpy = jest.spyOn(MemoryLockBackend.prototype, 'close');
    try {
      const { app } = await createLockApp({ backend: { type: 'memory' } });
      await app.close();
      expect(closeSpy).toHaveBeenCalledTimes(1);
    } finally {
      closeSpy.mockRestore();
    }
  });
});

afterAll(() => closeTestBackends());
