import { Socket, connect, createServer } from 'node:net';
import { Etcd3 } from 'etcd3';
import { EtcdLockBackend, EtcdLockBackendOptions } from '../../lib/backends/etcd';
import { sleep } from '../support/async.helpers';
import { waitForGrant, WaitOptions, Waited } from '../support/backend.waiter';
import { etcdHosts } from '../support/test-env';
import { newToken } from '../support/test-ids';

/** Creates backends and raw clients and closes them all at the end of a test file. */
export class Resources {
  private readonly backends: EtcdLockBackend[] = [];
  private readonly clients: Etcd3[] = [];

  backend(options: Partial<EtcdLockBackendOptions> = {}): EtcdLockBackend {
    const backend = new EtcdLockBackend(
      'client' in options && options.client
        ? (options as EtcdLockBackendOptions)
        : ({ hosts: etcdHosts(), ...options } as EtcdLockBackendOptions),
    );
    this.backends.push(backend);
    return backend;
  }

  client(hosts: string[] = etcdHosts()): Etcd3 {
    const client = new Etcd3({ hosts });
    this.clients.push(client);
    return client;
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.backends.splice(0).map((backend) => backend.close()));
    for (const client of this.clients.splice(0)) client.close();
    // After close, etcd3 and grpc-js keep ref'ed reconnect timers for up to ~1-2 s (watch stream
    // backoff, waitForReady of connecting channels); let them run out so jest workers exit cleanly.
    await sleep(1_500);
  }
}

/** Every member key (holders and waiters) of lock `key`, in create-revision order. */
export async function members(
  client: Etcd3,
  key: string,
): Promise<{ key: string; createRevision: number; lease: string }[]> {
  const response = await client.kv.range({
    key: Buffer.from(`${key}\u0000`),
    range_end: Buffer.from(`${key}\u0001`),
    sort_order: 'Ascend',
    sort_target: 'Create',
  });
  return response.kvs.map((kv) => ({
    key: kv.key.toString('utf8'),
    createRevision: Number(kv.create_revision),
    lease: kv.lease,
  }));
}

/** {@link waitForGrant} for a fresh token, returned with what it got. */
export async function waitForLock(
  backend: EtcdLockBackend,
  keys: string[],
  options: WaitOptions,
): Promise<Waited & { token: string }> {
  const token = newToken();
  return { token, ...(await waitForGrant(backend, { keys, token }, options)) };
}

/** A TCP proxy to etcd that a test can cut, to simulate a network partition of one backend. */
export interface EtcdProxy {
  readonly port: number;
  readonly host: string;
  /**
   * `refuse`: reset every connection; `blackhole`: accept and never answer; `drop-replies`:
   * requests still reach etcd (and are applied), its answers are lost.
   */
  cut(mode: 'refuse' | 'blackhole' | 'drop-replies'): void;
  /** Forwards again. */
  heal(): void;
  close(): Promise<void>;
}

/** Starts a proxy on 127.0.0.1 forwarding to `target` (`http://127.0.0.1:PORT`). */
export async function startProxy(target: string): Promise<EtcdProxy> {
  const url = new URL(target);
  const sockets = new Set<Socket>();
  let mode: 'open' | 'refuse' | 'blackhole' | 'drop-replies' = 'open';
  const server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    if (mode === 'refuse') {
      client.destroy();
      return;
    }
    if (mode === 'blackhole') return;
    const upstream = connect({ host: url.hostname, port: Number(url.port) });
    sockets.add(upstream);
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    client.on('data', (chunk) => {
      if (mode === 'open' || mode === 'drop-replies') upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (mode === 'open') client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    port,
    host: `http://127.0.0.1:${port}`,
    cut(next) {
      mode = next;
      if (next === 'refuse') for (const socket of sockets) socket.destroy();
    },
    heal() {
      mode = 'open';
      for (const socket of sockets) socket.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
