import { Etcd3, Range } from 'etcd3';
import { LockBackendError } from '../../lib/errors/lock-backend.error';
import { startEtcd } from '../servers/etcd.server';
import { removeDir, type ServerProcess } from '../servers/server.process';
import { newToken, uniqueKey } from '../support/test-ids';
import { Resources } from './etcd-test.helpers';

describe('EtcdLockBackend.ping on an etcd with authentication (own etcd)', () => {
  const resources = new Resources();
  let server: ServerProcess;
  let hosts: string[];

  beforeAll(async () => {
    server = await startEtcd();
    hosts = [`http://127.0.0.1:${server.port}`];
    const admin = new Etcd3({ hosts });
    try {
      await admin.role('root').create();
      await (await admin.user('root').create('root-password')).addRole('root');
      // A user that may touch the lock keys only, as a locking service's account would.
      const locks = await admin.role('locks').create();
      await locks.grant({ permission: 'Readwrite', range: Range.prefix('lock:') });
      await (await admin.user('locker').create('locker-password')).addRole('locks');
      await admin.auth.authEnable();
    } finally {
      admin.close();
    }
  }, 60_000);
  afterAll(async () => {
    await resources.closeAll();
    await server.stop();
    removeDir(server.dir);
  });

  it('passes for a user allowed only its lock keys (a denied read is an answer), fails on a wrong password naming it', async () => {
    const auth = { username: 'locker', password: 'locker-password' };
    const locker = resources.backend({ hosts, auth, commandTimeout: 1_000 });
    await expect(locker.ping()).resolves.toBeUndefined();
    const lock = { keys: [`lock:${uniqueKey('auth')}`], token: newToken() };
    expect((await locker.acquire({ ...lock, ttl: 5_000 })).acquired).toBe(true);
    expect(await locker.release(lock)).toBe(true);

    const wrong = resources.backend({ hosts, auth: { ...auth, password: 'wrong' } });
    const error = await wrong.ping().then(
      () => new Error('ping passed'),
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(LockBackendError);
    expect((error as Error).message).toMatch(/authentication failed/);
  }, 30_000);
});
