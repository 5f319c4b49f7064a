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
      const { RedisLockBackend, EtcdLockBackend, RedlockLockBackend } = require('nestjs-distributed-lock');
      const messages = [];
      try { new RedisLockBackend({ url: 'redis://127.0.0.1:1' }); } catch (e) { messages.push(e.message); }
      try { new EtcdLockBackend({ hosts: 'http://127.0.0.1:1' }); } catch (e) { messages.push(e.message); }
      const urls = ['redis://127.0.0.1:1', 'redis://127.0.0.1:2', 'redis://127.0.0.1:3'];
      try { new RedlockLockBackend({ urls }); } catch (e) { messages.push(e.message); }
      process.stdout.write(JSON.stringify(messages));
    `);
    const [redis, etcd, redlock] = JSON.parse(out) as string[];
    expect(redis).toMatch(/npm i ioredis/);
    expect(etcd).toMatch(/npm i etcd3/);
    expect(redlock).toMatch(/RedlockLockBackend needs the ioredis package.*npm i ioredis/);
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
    // No option tokens, no defaults but the key prefix, no backend internals; the one other
    // constant is the list of lock event types.
    expect(exported.root.sort()).toEqual(
      [
        'DEFAULT_KEY_PREFIX',
        'LOCK_EVENT_TYPES',
        'DistributedLockModule',
        'EtcdLockBackend',
        'LockBackendError',
        'LockError',
        'LockInterceptor',
        'LockLostError',
        'LockNotAcquiredError',
        'LockService',
        'LockShutdownError',
        'Locked',
        'MemoryLockBackend',
        'RedisLockBackend',
        'RedlockLockBackend',
      ].sort(),
    );
    // The contract is types, plus the error every backend method rejects with.
    expect(exported.backend).toEqual(['LockBackendError']);
    expect(exported.sameError).toBe(true);
  });

  describe('published types, as an application compiles them', () => {
    let dir: string;
    const links: string[] = [];
    beforeAll(() => {
      // An application folder with the package installed (a link to this checkout), and the
      // optional peers, which each compile below shows or hides.
      dir = realpathSync(mkdtempSync(join(tmpdir(), 'ndl-consumer-')));
      mkdirSync(join(dir, 'node_modules'));
      for (const [name, target] of [
        ['nestjs-distributed-lock', root],
        ['ioredis', join(root, 'node_modules', 'ioredis')],
        ['etcd3', join(root, 'node_modules', 'etcd3')],
      ]) {
        links.push(join(dir, 'node_modules', name));
        symlinkSync(target, join(dir, 'node_modules', name), 'dir');
      }
      writeFileSync(join(dir, 'consumer.ts'), CONSUMER);
      writeFileSync(join(dir, 'consumer-with-peers.ts'), CONSUMER_WITH_PEERS);
    });
    afterAll(() => {
      // The links first, so nothing can reach into the checkout.
      for (const link of links.splice(0)) unlinkSync(link);
      rmSync(dir, { recursive: true, force: true });
    });

    /** A strict compile of `file` with our .d.ts checked like sources; its diagnostics and files. */
    function compile(
      file: string,
      moduleResolution: ts.ModuleResolutionKind,
      module: ts.ModuleKind,
      peers: 'installed' | 'missing',
    ): { messages: string[]; ours: readonly ts.SourceFile[]; all: readonly ts.SourceFile[] } {
      const options: ts.CompilerOptions = {
        strict: true,
        noEmit: true,
        module,
        moduleResolution,
        target: ts.ScriptTarget.ES2022,
        lib: ['lib.es2022.d.ts', 'lib.esnext.disposable.d.ts'],
        types: ['node'],
        typeRoots: [join(root, 'node_modules', '@types')],
        // Our .d.ts files are checked like sources: a dangling reference to a stripped
        // @internal symbol, or an import of a peer that is not installed, is an error there.
        skipLibCheck: false,
      };
      const host = ts.createCompilerHost(options);
      if (peers === 'missing') {
        // As in an application that installed neither: no file of theirs can be found.
        const hidden = /[\\/]node_modules[\\/](ioredis|etcd3)([\\/]|$)/;
        const { fileExists, readFile, directoryExists } = host;
        host.fileExists = (name) => !hidden.test(name) && fileExists(name);
        host.readFile = (name) => (hidden.test(name) ? undefined : readFile(name));
        host.directoryExists = (name) => !hidden.test(name) && (directoryExists?.(name) ?? true);
      }
      const program = ts.createProgram([join(dir, file)], options, host);
      const dist = realpathSync(join(root, 'dist'));
      const ours = program
        .getSourceFiles()
        .filter((f) => f.fileName === join(dir, file) || f.fileName.startsWith(dist));
      const messages = ours
        .flatMap((f) => [
          ...program.getSyntacticDiagnostics(f),
          ...program.getSemanticDiagnostics(f),
        ])
        .map(
          (d) =>
            `${d.file?.fileName ?? ''}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`,
        );
      return { messages, ours, all: program.getSourceFiles() };
    }

    it.each([
      ['node (node10)', ts.ModuleResolutionKind.Node10, ts.ModuleKind.CommonJS],
      ['node16', ts.ModuleResolutionKind.Node16, ts.ModuleKind.Node16],
    ])(
      'resolve with moduleResolution %s without ioredis or etcd3 installed, hide test-only members, reference nothing stripped',
      (_name, moduleResolution, module) => {
        const { messages, ours, all } = compile('consumer.ts', moduleResolution, module, 'missing');
        const dist = realpathSync(join(root, 'dist'));
        // Both entry points, and the backends' option types, came from the built package.
        expect(ours.map((f) => f.fileName)).toEqual(
          expect.arrayContaining(
            ['index.d.ts', 'backend.d.ts', 'backends/redis/redis-backend.options.d.ts']
              .concat('backends/etcd/etcd-backend.options.d.ts')
              .map((name) => join(dist, name)),
          ),
        );
        // The peers really were out of reach.
        expect(
          all.filter((f) => /[\\/]node_modules[\\/](ioredis|etcd3)[\\/]/.test(f.fileName)),
        ).toEqual([]);
        // No published declaration an application reaches imports them.
        const peerImports = ours.flatMap((f) => {
          const info = ts.preProcessFile(f.text, true, true);
          return [...info.importedFiles, ...info.typeReferenceDirectives]
            .filter((ref) => /^(ioredis|etcd3)(\/|$)/.test(ref.fileName))
            .map((ref) => `${f.fileName}: ${ref.fileName}`);
        });
        expect(peerImports).toEqual([]);
        expect(messages).toEqual([]);
      },
      30_000,
    );

    it('take a real ioredis Redis and etcd3 Etcd3, and their options, without casts', () => {
      const { messages } = compile(
        'consumer-with-peers.ts',
        ts.ModuleResolutionKind.Node10,
        ts.ModuleKind.CommonJS,
        'installed',
      );
      expect(messages).toEqual([]);
    }, 30_000);
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

/**
 * An application with both optional peers installed, passing their clients and options as
 * applications do. `@ts-expect-error` lines fail the compile if a typo in their options passes.
 */
const CONSUMER_WITH_PEERS = `
import Redis, { type RedisOptions } from 'ioredis';
import { Etcd3, type IOptions } from 'etcd3';
import { DistributedLockModule, EtcdLockBackend, RedisLockBackend } from 'nestjs-distributed-lock';

const redisOptions: RedisOptions = { host: '127.0.0.1', port: 6379, db: 1 };
const etcdOptions: Omit<IOptions, 'hosts'> = { dialTimeout: 1000 };
export const backends = [
  new RedisLockBackend({ client: new Redis({ lazyConnect: true }) }),
  new RedisLockBackend({ options: redisOptions, commandTimeout: 1000 }),
  new RedisLockBackend({
    options: { host: 'h', tls: {}, enableAutoPipelining: true, retryStrategy: (n: number) => n * 10 },
  }),
  new EtcdLockBackend({ client: new Etcd3({ hosts: 'http://127.0.0.1:2379' }) }),
  new EtcdLockBackend({ hosts: ['http://127.0.0.1:2379'], ...etcdOptions, sessionTtl: 5000 }),
];
export const modules = [
  DistributedLockModule.forRoot({ backend: { type: 'redis', client: new Redis() } }),
  DistributedLockModule.forRoot({ backend: { type: 'etcd', client: new Etcd3(), commandTimeout: 500 } }),
];
// @ts-expect-error a typo inside ioredis options
export const typo = new RedisLockBackend({ options: { hots: 'h' } });
// @ts-expect-error a typo among etcd3 options
export const typo2 = new EtcdLockBackend({ hosts: 'http://h:1', dialTimout: 1 });
`;
