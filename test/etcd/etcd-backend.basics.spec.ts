import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { EtcdLockBackend } from '../../lib/backends/etcd';
import { LockBackendError } from '../../lib/errors/lock-backend.error';
import { sleep } from '../support/async.helpers';
import { etcdHosts } from '../support/test-env';
import { newToken, uniqueKey } from '../support/test-ids';
import { Resources, members } from './etcd-test.helpers';

describe('EtcdLockBackend basics (real etcd)', () => {
  const resources = new Resources();
  afterAll(() => resources.closeAll());

  describe('construction', () => {
    it('rejects bad options clearly', () => {
      const hosts = etcdHosts();
      expect(() => new EtcdLockBackend({} as never)).toThrow(/exactly one of `hosts`/);
      expect(() => new EtcdLockBackend({ hosts: [] })).toThrow(/hosts/);
      expect(() => new EtcdLockBackend({ hosts: [''] })).toThrow(/hosts/);
      expect(() => new EtcdLockBackend({ hosts, client: resources.client() } as never)).toThrow(
        /exactly one/,
      );
      expect(() => new EtcdLockBackend({ client: {} as never })).toThrow(/Etcd3 instance/);
      expect(() => new EtcdLockBackend({ hosts, sessionTtl: 0 })).toThrow(TypeError);
      expect(() => new EtcdLockBackend({ hosts, sessionTtl: Number.NaN })).toThrow(TypeError);
      expect(() => new EtcdLockBackend({ hosts, commandTimeout: -1 })).toThrow(TypeError);
      expect(
        () => new EtcdLockBackend({ client: resources.client(), sesionTtl: 3000 } as never),
      ).toThrow(/unknown option "sesionTtl"; did you mean "sessionTtl"/);
    });

    it('rejects a host that is not [http[s]://]host:port, naming it, and unknown etcd3 option names', () => {
      for (const bad of [
        'not a url',
        'http://127.0.0.1',
        'ftp://h:2379',
        'h:99999',
        'http://h:1/x',
      ]) {
        expect(() => new EtcdLockBackend({ hosts: ['http://ok:2379', bad] })).toThrow(
          `hosts: "${bad}" is not an etcd endpoint`,
        );
      }
      for (const good of [
        'http://h:2379',
        'https://h.example:2379',
        'h:2379',
        'http://[::1]:2379',
      ]) {
        expect(resources.backend({ hosts: [good] }).endpoint).toBe(good);
      }
      expect(resources.backend({ hosts: ['http://a:1', 'http://b:2'] }).endpoint).toBe(
        'http://a:1, http://b:2',
      );
      const hosts = etcdHosts();
      expect(() => new EtcdLockBackend({ hosts, dialTimout: 1000 } as never)).toThrow(
        /unknown option "dialTimout"; did you mean "dialTimeout"/,
      );
      expect(() => new EtcdLockBackend({ hosts, comandTimeout: 1000 } as never)).toThrow(
        /did you mean "commandTimeout"/,
      );
      // etcd3's own options pass through.
      resources.backend({ hosts, dialTimeout: 1000, grpcOptions: {}, defaultCallOptions: {} });
      // A client of the user's is named by the hosts it was created with.
      expect(resources.backend({ client: resources.client(hosts) }).endpoint).toBe(
        hosts.join(', '),
      );
    });

    it('does not load etcd3 when the backend module is imported', () => {
      const root = join(__dirname, '..', '..');
      const script = `
        const ts = require('typescript');
        const fs = require('fs');
        require.extensions['.ts'] = (m, file) => m._compile(ts.transpileModule(fs.readFileSync(file, 'utf8'),
          { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true } }).outputText, file);
        require('./lib/backends/etcd');
        const loaded = Object.keys(require.cache).some((f) => f.includes('/node_modules/etcd3/'));
        process.stdout.write(loaded ? 'loaded' : 'not-loaded');
      `;
      const out = execFileSync(process.execPath, ['-e', script], {
        cwd: root,
        encoding: 'utf8',
        timeout: 20_000,
      });
      expect(out).toBe('not-loaded');
    });
  });

  it('leaves no trace when a try-once attempt finds the lock busy', async () => {
    const backend = resources.backend();
    const raw = resources.client();
    const key = uniqueKey('no-trace');
    expect((await backend.acquire({ keys: [key], token: newToken(), ttl: 5_000 })).acquired).toBe(
      true,
    );
    for (let i = 0; i < 3; i++) {
      expect((await backend.acquire({ keys: [key], token: newToken(), ttl: 5_000 })).acquired).toBe(
        false,
      );
    }
    expect(await members(raw, key)).toHaveLength(1);
  });

  it('never grants the same key to two acquisitions of one backend instance', async () => {
    const backend = resources.backend();
    const key = uniqueKey('same-instance');
    for (let round = 0; round < 5; round++) {
      const tokens = Array.from({ length: 8 }, () => newToken());
      const results = await Promise.all(
        tokens.map((token, i) =>
          backend.acquire({ keys: [key], token, ttl: 5_000, queueFor: i % 2 ? 1_000 : 0 }),
        ),
      );
      const winners = tokens.filter((_, i) => results[i].acquired);
      expect(winners).toHaveLength(1);
      for (const token of tokens) {
        if (token !== winners[0]) await backend.cancel({ keys: [key], token });
      }
      expect(await backend.release({ keys: [key], token: winners[0] })).toBe(true);
    }
  });

  it('does not confuse a lock with another whose name extends it', async () => {
    const backend = resources.backend();
    const parent = uniqueKey('nested');
    const child = `${parent}/child`;
    expect((await backend.acquire({ keys: [child], token: newToken(), ttl: 5_000 })).acquired).toBe(
      true,
    );
    expect(
      (await backend.acquire({ keys: [parent], token: newToken(), ttl: 5_000 })).acquired,
    ).toBe(true);
  });

  it('extends in batches, owner-checked, one boolean per request', async () => {
    const backend = resources.backend();
    const other = resources.backend();
    const refs = Array.from({ length: 150 }, () => ({
      keys: [uniqueKey('batch')],
      token: newToken(),
    }));
    for (const ref of refs)
      expect((await backend.acquire({ ...ref, ttl: 5_000 })).acquired).toBe(true);
    expect(await backend.release(refs[3])).toBe(true);
    const stranger = { keys: refs[5].keys, token: newToken() };
    const results = await backend.extend([
      ...refs.map((ref) => ({ ...ref, ttl: 5_000 })),
      { ...stranger, ttl: 5_000 },
    ]);
    expect(results).toHaveLength(151);
    expect(results.filter((ok) => ok)).toHaveLength(149);
    expect(results[3]).toBe(false);
    expect(results[150]).toBe(false);
    expect(await other.extend([{ ...refs[0], ttl: 5_000 }])).toEqual([false]);
    expect(await backend.extend([])).toEqual([]);
  });

  it('rejects keys it cannot store', async () => {
    const backend = resources.backend();
    await expect(
      backend.acquire({ keys: ['bad\u0000key'], token: newToken(), ttl: 1_000 }),
    ).rejects.toThrow(LockBackendError);
    await expect(
      backend.acquire({
        keys: Array.from({ length: 40 }, (_, i) => `${uniqueKey('many')}-${i}`),
        token: newToken(),
        ttl: 1_000,
      }),
    ).rejects.toThrow(/at most 32 keys/);
  });

  it('leaves a client it was given open, and releases its locks on close', async () => {
    const client = resources.client();
    const backend = new EtcdLockBackend({ client });
    const observer = resources.backend();
    const key = uniqueKey('own-client');
    expect((await backend.acquire({ keys: [key], token: newToken(), ttl: 30_000 })).acquired).toBe(
      true,
    );
    await backend.close();
    await backend.close();
    expect((await observer.inspect(key)).held).toBe(false);
    await client.put(`${key}:probe`).value('still open');
    expect(await client.get(`${key}:probe`).string()).toBe('still open');
    await client.delete().key(`${key}:probe`);
    await expect(backend.acquire({ keys: [key], token: newToken(), ttl: 1_000 })).rejects.toThrow(
      /closed/,
    );
  });

  it('closes a client it created', async () => {
    const backend = new EtcdLockBackend({ hosts: etcdHosts() });
    const key = uniqueKey('owned-client');
    expect((await backend.acquire({ keys: [key], token: newToken(), ttl: 30_000 })).acquired).toBe(
      true,
    );
    await backend.close();
    const observer = resources.backend();
    expect((await observer.inspect(key)).held).toBe(false);
    await sleep(10);
  });
});
