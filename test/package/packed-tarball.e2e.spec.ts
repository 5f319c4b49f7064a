import { execFile } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

/**
 * What a new user gets: the tarball of `npm pack` (of the build that `npm test` makes first),
 * installed by npm into a fresh application that has neither ioredis nor etcd3, compiled with
 * `strict` and `skipLibCheck: false`, booted on the memory backend, and unit-tested through
 * the testing kit. Nothing here resolves into this checkout: the application sees only what
 * the tarball holds.
 */

const root = join(__dirname, '..', '..');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const PACKAGE = 'nestjs-distributed-lock';

interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a command to its end within `timeout` ms; never rejects, so a failure is asserted with
 * its output. The parent's `npm_*` variables are dropped: under `npm test` they point npm at this
 * checkout (its prefix, its package.json), and the application must be installed on its own.
 */
function run(
  command: string,
  args: readonly string[],
  cwd: string,
  timeout: number,
): Promise<CommandResult> {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)),
  );
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      { cwd, env, timeout, killSignal: 'SIGKILL', encoding: 'utf8', maxBuffer: 16 << 20 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        const killed = error?.killed ? `killed after ${timeout} ms\n` : '';
        resolve({ code, stdout: stdout.trim(), stderr: `${killed}${stderr}`.trim() });
      },
    );
  });
}

function versionOf(name: string): string {
  const manifest = JSON.parse(
    readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8'),
  ) as { version: string };
  return manifest.version;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((f) => join(dir, f));
}

const APP_SERVICE = `
import { Injectable } from '@nestjs/common';
import { Locked } from 'nestjs-distributed-lock';

@Injectable()
export class AppService {
  @Locked('hello')
  async getHello(): Promise<string> {
    return 'Hello World!';
  }
}
`;

const APP_MODULE = `
import { Module } from '@nestjs/common';
import { DistributedLockModule } from 'nestjs-distributed-lock';
import { AppService } from './app.service';

@Module({ imports: [DistributedLockModule.forRoot()], providers: [AppService] })
export class AppModule {}
`;

const MAIN = `
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { LockService } from 'nestjs-distributed-lock';
import type { Lock } from 'nestjs-distributed-lock';
import { AppModule } from './app.module';
import { AppService } from './app.service';

async function main(): Promise<void> {
  const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
  const locks = app.get(LockService);
  const lock: Lock = await locks.acquire('order:1', { ttl: 5000 });
  const whileHeld = { held: lock.held, isLocked: await locks.isLocked('order:1') };
  await lock.release();
  const afterRelease = { held: lock.held, isLocked: await locks.isLocked('order:1') };
  const hello = await app.get(AppService).getHello();
  await app.close();
  process.stdout.write(
    JSON.stringify({ keys: lock.keys, fencingToken: lock.fencingToken, whileHeld, afterRelease, hello }),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
`;

const UNIT_TEST = `
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { Test } from '@nestjs/testing';
import { LockNotAcquiredError } from 'nestjs-distributed-lock';
import { DistributedLockTestingModule, LockTesting } from 'nestjs-distributed-lock/testing';
import { AppService } from './app.service';

async function main(): Promise<void> {
  const moduleRef = await Test.createTestingModule({
    imports: [DistributedLockTestingModule.forRoot({ wait: 0 })],
    providers: [AppService],
  }).compile();
  const testing = moduleRef.get(LockTesting);
  const service = moduleRef.get(AppService);

  assert.equal(testing.wasLocked('hello'), false);
  assert.equal(await service.getHello(), 'Hello World!');
  assert.equal(testing.wasLocked('hello'), true);
  assert.deepEqual(
    testing.grants().map((grant) => ({ keys: grant.keys, released: grant.released })),
    [{ keys: ['hello'], released: true }],
  );

  const busy = await testing.hold('hello');
  await assert.rejects(service.getHello(), LockNotAcquiredError);
  await busy.release();
  assert.equal(await service.getHello(), 'Hello World!');

  await moduleRef.close();
  process.stdout.write('unit test passed');
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
`;

describe('the packed tarball, installed in a fresh application', () => {
  let work: string;
  let app: string;
  let packedFiles: string[];
  let install: CommandResult;
  let compile: CommandResult;

  beforeAll(async () => {
    if (!existsSync(join(root, 'dist', 'index.js'))) {
      throw new Error('dist/ is missing: `npm test` builds it first; or run `npm run build`');
    }
    work = realpathSync(mkdtempSync(join(tmpdir(), 'ndl-packed-')));
    const pack = await run('npm', ['pack', '--json', '--pack-destination', work], root, 60_000);
    if (pack.code !== 0) throw new Error(`npm pack failed:\n${pack.stdout}\n${pack.stderr}`);
    const [packed] = JSON.parse(pack.stdout) as {
      filename: string;
      files: { path: string }[];
    }[];
    packedFiles = packed.files.map((f) => f.path).sort();

    app = join(work, 'app');
    mkdirSync(join(app, 'src'), { recursive: true });
    const pinned = (names: string[]) => Object.fromEntries(names.map((n) => [n, versionOf(n)]));
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({
        name: 'packed-app',
        version: '0.0.0',
        private: true,
        dependencies: {
          [PACKAGE]: `file:../${packed.filename}`,
          ...pinned(['@nestjs/common', '@nestjs/core', 'reflect-metadata', 'rxjs']),
        },
        devDependencies: pinned(['@nestjs/testing', '@types/node']),
      }),
    );
    // What `nest new` (Nest 11) generates, made strict and with every .d.ts checked.
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          moduleResolution: 'nodenext',
          target: 'ES2023',
          strict: true,
          skipLibCheck: false,
          experimentalDecorators: true,
          emitDecoratorMetadata: true,
          esModuleInterop: true,
          isolatedModules: true,
          outDir: 'dist',
          rootDir: 'src',
        },
        include: ['src'],
      }),
    );
    writeFileSync(join(app, 'src', 'app.service.ts'), APP_SERVICE);
    writeFileSync(join(app, 'src', 'app.module.ts'), APP_MODULE);
    writeFileSync(join(app, 'src', 'main.ts'), MAIN);
    writeFileSync(join(app, 'src', 'app.service.unit.ts'), UNIT_TEST);

    install = await run(
      'npm',
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--no-package-lock'],
      app,
      120_000,
    );
    // tsc emits even when it reports errors, so the run-time tests below stand on their own.
    compile =
      install.code === 0 ? await run(process.execPath, [tsc, '-p', app], app, 60_000) : install;
  }, 240_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('holds package.json, README, LICENSE, CHANGELOG and the build, and every export target', () => {
    expect(packedFiles).toEqual(
      expect.arrayContaining(['CHANGELOG.md', 'LICENSE', 'README.md', 'package.json']),
    );
    const unexpected = packedFiles.filter(
      (f) =>
        !/^(CHANGELOG\.md|LICENSE|README\.md|package\.json)$/.test(f) &&
        !/^dist\/.+\.(js|js\.map|d\.ts)$/.test(f),
    );
    expect(unexpected).toEqual([]);
    expect(packedFiles.filter((f) => f.includes('.spec.'))).toEqual([]);

    const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      exports: Record<string, string | Record<string, string>>;
    };
    const targets = Object.values(manifest.exports).flatMap((t) =>
      typeof t === 'string' ? [t] : Object.values(t),
    );
    expect(targets.length).toBeGreaterThan(0);
    const missing = targets
      .map((t) => t.replace(/^\.\//, ''))
      .filter((t) => !packedFiles.includes(t));
    expect(missing).toEqual([]);
  });

  it('installs as a copy of the tarball, without ioredis or etcd3', async () => {
    expect(install).toEqual({ code: 0, stdout: expect.any(String), stderr: expect.any(String) });
    const installed = join(app, 'node_modules', PACKAGE);
    expect(lstatSync(installed).isSymbolicLink()).toBe(false);
    expect(existsSync(join(installed, 'lib'))).toBe(false);
    expect(existsSync(join(app, 'node_modules', 'ioredis'))).toBe(false);
    expect(existsSync(join(app, 'node_modules', 'etcd3'))).toBe(false);
    // Nothing above the application provides them either.
    const resolved = await run(
      process.execPath,
      [
        '-e',
        `process.stdout.write(JSON.stringify(['ioredis', 'etcd3', '${PACKAGE}'].map((m) => {
          try { return require.resolve(m); } catch { return null; }
        })))`,
      ],
      app,
      10_000,
    );
    expect(resolved).toEqual({ code: 0, stdout: expect.any(String), stderr: '' });
    expect(JSON.parse(resolved.stdout)).toEqual([null, null, join(installed, 'dist', 'index.js')]);
  });

  it('ships source maps that carry their sources, since lib/ is not shipped', () => {
    const installed = join(app, 'node_modules', PACKAGE);
    const maps = filesUnder(join(installed, 'dist')).filter((f) => f.endsWith('.js.map'));
    expect(maps.length).toBeGreaterThan(0);
    const incomplete = maps.filter((file) => {
      const map = JSON.parse(readFileSync(file, 'utf8')) as {
        sources: string[];
        sourcesContent?: (string | null)[];
      };
      return (
        map.sources.length === 0 ||
        map.sourcesContent?.length !== map.sources.length ||
        map.sourcesContent.some((content) => !content)
      );
    });
    expect(incomplete.map((f) => relative(installed, f))).toEqual([]);
  });

  it('compiles with strict: true and skipLibCheck: false', () => {
    expect(compile).toEqual({ code: 0, stdout: '', stderr: '' });
  });

  it('boots on the memory backend and takes a lock', async () => {
    const booted = await run(process.execPath, [join(app, 'dist', 'main.js')], app, 20_000);
    expect(booted).toEqual({ code: 0, stdout: expect.any(String), stderr: '' });
    expect(JSON.parse(booted.stdout)).toEqual({
      keys: ['order:1'],
      fencingToken: expect.any(Number),
      whileHeld: { held: true, isLocked: true },
      afterRelease: { held: false, isLocked: false },
      hello: 'Hello World!',
    });
  });

  it('runs a unit test of a @Locked provider through the testing kit', async () => {
    const unit = await run(
      process.execPath,
      [join(app, 'dist', 'app.service.unit.js')],
      app,
      20_000,
    );
    expect(unit).toEqual({ code: 0, stdout: 'unit test passed', stderr: '' });
  });
});
