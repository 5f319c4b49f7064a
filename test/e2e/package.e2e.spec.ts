import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

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
});
