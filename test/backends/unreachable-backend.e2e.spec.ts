import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../servers/server.process';

const root = join(__dirname, '..', '..');
/** Far above the few seconds a rejection takes (commandTimeout 2 s), far below "never". */
const CHILD_TIMEOUT = 30_000;

/**
 * Runs `script` in a fresh Node process against the BUILT package (`npm test` builds it first),
 * with nothing else keeping that process alive, and returns what it printed.
 */
async function runScript(script: string): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, ['-e', script], {
    cwd: root,
    encoding: 'utf8',
    timeout: CHILD_TIMEOUT,
  });
  return stdout;
}

/** Prints how `promise` settled, then closes `closable`. */
const REPORT = `
  const { LockBackendError } = require('nestjs-distributed-lock');
  function report(promise, closable) {
    return promise.then(
      () => process.stdout.write('settled without error'),
      (e) => process.stdout.write((e instanceof LockBackendError ? 'LockBackendError: ' : e.name + ': ') + e.message),
    ).finally(() => closable?.close());
  }
`;

describe('an acquire on a refused port, in a plain script, keeps the process alive until it settles', () => {
  let address: string;
  beforeEach(async () => {
    address = `127.0.0.1:${await freePort()}`;
  });

  it.each([
    ['redis', `new RedisLockBackend({ url: 'redis://ADDRESS' })`],
    ['etcd', `new EtcdLockBackend({ hosts: 'http://ADDRESS' })`],
  ])(
    '%s backend: the typed rejection, naming the refused connection',
    async (_name, create) => {
      const out = await runScript(`${REPORT}
      const { RedisLockBackend, EtcdLockBackend } = require('nestjs-distributed-lock');
      const backend = ${create.replace('ADDRESS', address)};
      report(backend.acquire({ keys: ['k'], token: 't', ttl: 1000 }), backend);
    `);
      expect(out).toMatch(/^LockBackendError: /);
      expect(out).toContain(`ECONNREFUSED ${address}`);
    },
    CHILD_TIMEOUT + 5_000,
  );

  it(
    'etcd through NestFactory.createApplicationContext and LockService: the start or the acquire rejects, naming the refused connection',
    async () => {
      const out = await runScript(`${REPORT}
      require('reflect-metadata');
      const { Module } = require('@nestjs/common');
      const { NestFactory } = require('@nestjs/core');
      const { DistributedLockModule, LockService } = require('nestjs-distributed-lock');
      class AppModule {}
      Module({ imports: [DistributedLockModule.forRoot({ backend: { type: 'etcd', hosts: 'http://${address}' } })] })(AppModule);
      let app;
      report(
        NestFactory.createApplicationContext(AppModule, { logger: false }).then((created) => {
          app = created;
          return app.get(LockService).acquire('k', { wait: 0 });
        }),
        { close: () => app?.close() },
      );
    `);
      expect(out).toMatch(/^\w+: /);
      expect(out).toContain(`ECONNREFUSED ${address}`);
    },
    CHILD_TIMEOUT + 5_000,
  );
});
