import { execFileSync } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  realpathSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';

const root = join(__dirname, '..', '..');

/**
 * Runs `script` in a fresh Node process against the BUILT package (`npm test` builds it first),
 * resolved by its own name as an installed dependency would be, with `ioredis` and `etcd3` made
 * unresolvable: an application on the memory backend must not need them.
 */
function runWithoutOptionalPeers(script: string): string {
  const preload = `{
    const NodeModule = require('node:module');
    const resolve = NodeModule._resolveFilename;
    NodeModule._resolveFilename = function (request, ...rest) {
      if (request === 'ioredis' || request === 'etcd3') {
        throw Object.assign(new Error("Cannot find module '" + request + "'"), { code: 'MODULE_NOT_FOUND' });
      }
      return resolve.call(this, request, ...rest);
    };
  }`;
  return execFileSync(process.execPath, ['-e', preload + script], {
    cwd: root,
    encoding: 'utf8',
    timeout: 30_000,
  });
}

describe('the built package', () => {
  it('runs on the memory backend without ioredis or etcd3 installed', () => {
    const out = runWithoutOptionalPeers(`
      require('reflect-metadata');
      const { Module } = require('@nestjs/common');
      const { NestFactory } = require('@nestjs/core');
      const { DistributedLockModule, LockService } = require('nestjs-distributed-lock');
      class AppModule {}
      Module({ imports: [DistributedLockModule.forRoot()] })(AppModule);
      (async () => {
        const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
        const lock = await app.get(LockService).acquire('k');
        await lock.release();
        await app.close();
        process.stdout.write('ok ' + typeof lock.fencingToken);
      })().catch((e) => { process.stdout.write('failed ' + e.message); });
    `);
    expect(out).toBe('ok number');
  });

  it('says what to install when Redis or etcd is chosen without its client', () => {
    const out = runWithoutOptionalPeers(`
      const { RedisLockBackend, EtcdLockBackend } = require('nestjs-distributed-lock');
      const messages = [];
      try { new RedisLockBackend({ url: 'redis://127.0.0.1:1' }); } catch (e) { messages.push(e.message); }
      try { new EtcdLockBackend({ hosts: 'http://127.0.0.1:1' }); } catch (e) { messages.push(e.message); }
      process.stdout.write(JSON.stringify(messages));
    `);
    const [redis, etcd] = JSON.parse(out) as string[];
    expect(redis).toMatch(/npm i ioredis/);
    expect(etcd).toMatch(/npm i etcd3/);
  });

  it('exports exactly the public API at runtime, and the backend contract from /backend', () => {
    const out = runWithoutOptionalPeers(`
      const root = require('nestjs-distributed-lock');
      const backend = require('nestjs-distributed-lock/backend');
      process.stdout.write(JSON.stringify({
        root: Object.keys(root),
        backend: Object.keys(backend),
        sameError: backend.LockBackendError === root.LockBackendError,
      }));
    `);
    const exported = JSON.parse(out) as { root: string[]; backend: string[]; sameError: boolean };
    // No option tokens, no defaults but the key prefix, no backend internals.
    expect(exported.root.sort()).toEqual(
      [
        'DEFAULT_KEY_PREFIX',
        'DistributedLockModule',
        'EtcdLockBackend',
        'LockBackendError',
        'LockError',
        'LockInterceptor',
        'LockLostError',
        'LockNotAcquiredError',
        'LockService',
        'Locked',
        'MemoryLockBackend',
        'RedisLockBackend',
      ].sort(),
    );
    // The contract is types, plus the error every backend method rejects with.
    expect(exported.backend).toEqual(['LockBackendError']);
    expect(exported.sameError).toBe(true);
  });

  describe('published types, as an application compiles them', () => {
    let dir: string;
    let link: string;
    beforeAll(() => {
      // An application folder with the package installed (a link to this checkout).
      dir = realpathSync(mkdtempSync(join(tmpdir(), 'ndl-consumer-')));
      mkdirSync(join(dir, 'node_modules'));
      link = join(dir, 'node_modules', 'nestjs-distributed-lock');
      symlinkSync(root, link, 'dir');
      writeFileSync(join(dir, 'consumer.ts'), CONSUMER);
    });
    afterAll(() => {
      // The link first, so nothing can reach into the checkout.
      unlinkSync(link);
      rmSync(dir, { recursive: true, force: true });
    });

    it.each([
      ['node (node10)', ts.ModuleResolutionKind.Node10, ts.ModuleKind.CommonJS],
      ['node16', ts.ModuleResolutionKind.Node16, ts.ModuleKind.Node16],
    ])(
      'resolve with moduleResolution %s, hide test-only members, reference nothing stripped',
      (_name, moduleResolution, module) => {
        const program = ts.createProgram([join(dir, 'consumer.ts')], {
          strict: true,
          noEmit: true,
          module,
          moduleResolution,
          target: ts.ScriptTarget.ES2022,
          lib: ['lib.es2022.d.ts', 'lib.esnext.disposable.d.ts'],
          types: ['node'],
          typeRoots: [join(root, 'node_modules', '@types')],
          // Our .d.ts files are checked like sources: a dangling reference to a stripped
          // @internal symbol would be an error there.
          skipLibCheck: false,
        });
        const dist = realpathSync(join(root, 'dist'));
        const ours = program
          .getSourceFiles()
          .filter((f) => f.fileName === join(dir, 'consumer.ts') || f.fileName.startsWith(dist));
        // Both entry points came from the built package, not from lib/.
        const names = ours.map((f) => f.fileName);
        expect(names).toEqual(
          expect.arrayContaining([join(dist, 'index.d.ts'), join(dist, 'backend.d.ts')]),
        );
        const diagnostics = ours.flatMap((f) => [
          ...program.getSyntacticDiagnostics(f),
          ...program.getSemanticDiagnostics(f),
        ]);
        const messages = diagnostics.map(
          (d) =>
            `${d.file?.fileName ?? ''}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`,
        );
        expect(messages).toEqual([]);
      },
      30_000,
    );
  });
});

/**
 * An application that uses the public API and implements its own backend. `@ts-expect-error`
 * lines fail the compile (unused directive) if a test-only member is visible in the types.
 */
const CONSUMER = `
import { DistributedLockModule, LockService, MemoryLockBackend, RedisLockBackend } from 'nestjs-distributed-lock';
import type { Lock, LockBackend } from 'nestjs-distributed-lock';
// @ts-expect-error the contract's request and response shapes live in /backend only
import type { BackendAcquireRequest as NotAtTheRoot } from 'nestjs-distributed-lock';
import { LockBackendError } from 'nestjs-distributed-lock/backend';
import type {
  BackendAcquireRequest,
  BackendAcquireResult,
  BackendExtendRequest,
  BackendLockInfo,
  BackendLockRef,
  LockBackend as ContractBackend,
  Unsubscribe,
  WakeListener,
} from 'nestjs-distributed-lock/backend';

class MyBackend implements ContractBackend {
  readonly name = 'mine';
  async acquire(_request: BackendAcquireRequest): Promise<BackendAcquireResult> {
    throw new LockBackendError('mine', 'acquire', 'not implemented');
  }
  async extend(requests: readonly BackendExtendRequest[]): Promise<boolean[]> {
    return requests.map(() => false);
  }
  async release(_ref: BackendLockRef): Promise<boolean> {
    return false;
  }
  async cancel(_ref: BackendLockRef): Promise<void> {}
  async inspect(_key: string): Promise<BackendLockInfo> {
    return { held: false };
  }
  onWake(_token: string, _listener: WakeListener): Unsubscribe {
    return () => undefined;
  }
}

const mine: LockBackend = new MyBackend();
export const modules = [
  DistributedLockModule.forRoot({ backend: mine }),
  DistributedLockModule.forRoot({ backend: new MemoryLockBackend(), ttl: 1000 }),
  DistributedLockModule.forRootAsync({ useFactory: () => ({ backend: { type: 'memory' as const } }) }),
];

export async function use(locks: LockService, redis: RedisLockBackend): Promise<number> {
  const lock: Lock = await locks.acquire('k');
  await lock.release();
  // @ts-expect-error test-only: not in the published types
  void new MemoryLockBackend().trackedKeys;
  // @ts-expect-error test-only: not in the published types
  void redis.wakeListenerCount;
  // @ts-expect-error the backend is not part of LockService's API
  void locks.backend;
  // @ts-expect-error what @Locked calls, not for applications
  void locks.runLocked;
  return lock.fencingToken;
}
`;
