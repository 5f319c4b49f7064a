import { Test } from '@nestjs/testing';
import { DistributedLockModule, LockBackendConfig } from 'nestjs-distributed-lock';
import { etcdHosts, redisUrl } from '../support/test-env';

/**
 * Compiles an application whose backend config came from outside the type checker (a config
 * file, an environment variable), and returns why it failed.
 */
async function bootFailure(config: Record<string, unknown>): Promise<Error> {
  const outcome = await Test.createTestingModule({
    imports: [DistributedLockModule.forRoot({ backend: config as unknown as LockBackendConfig })],
  })
    .compile()
    .then(
      async (compiled) => {
        await compiled.close();
        return new Error('the application compiled');
      },
      (error: unknown) => error,
    );
  if (!(outcome instanceof Error)) throw new Error(`not an Error: ${String(outcome)}`);
  return outcome;
}

describe('backend options are checked by DistributedLockModule.forRoot like module options', () => {
  it.each([
    [
      'redis, url form',
      () => ({ type: 'redis', url: redisUrl(), comandTimeout: 500 }),
      'commandTimeout',
    ],
    ['redis, ioredis options', () => ({ type: 'redis', options: { hots: '127.0.0.1' } }), 'host'],
    [
      'etcd, etcd3 options',
      () => ({ type: 'etcd', hosts: etcdHosts(), dialTimout: 500 }),
      'dialTimeout',
    ],
    ['etcd, tuning', () => ({ type: 'etcd', hosts: etcdHosts(), sesionTtl: 5000 }), 'sessionTtl'],
    ['memory', () => ({ type: 'memory', claimWindw: 500 }), 'claimWindow'],
  ])('a typo (%s) fails the start, suggesting the option meant', async (_form, config, meant) => {
    const error = await bootFailure(config());
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toContain(`; did you mean "${meant}"?`);
  });

  it('an etcd host that is not a URL fails the start, naming the host', async () => {
    const error = await bootFailure({
      type: 'etcd',
      hosts: ['http://127.0.0.1:2379', 'not a url'],
    });
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toContain('hosts: "not a url" is not an etcd endpoint');
  });

  it('never repeats a password of a host in its message', async () => {
    const error = await bootFailure({ type: 'etcd', hosts: 'http://root:s3cret@nowhere' });
    expect(error.message).toContain('hosts: "http://***@nowhere" is not an etcd endpoint');
    expect(error.message).not.toContain('s3cret');
  });
});
