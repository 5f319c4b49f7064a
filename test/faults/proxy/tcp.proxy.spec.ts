import { connect, createServer, Server, Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { sleep, within } from '../../support/async.helpers';
import { TcpProxy } from './tcp.proxy';

/** A socket and everything it received so far. */
function open(
  port: number,
): Promise<{ socket: Socket; received: () => string; closed: () => boolean; error: () => string }> {
  return new Promise((resolve, reject) => {
    let text = '';
    let closed = false;
    let error = '';
    const socket = connect({ host: '127.0.0.1', port }, () =>
      resolve({ socket, received: () => text, closed: () => closed, error: () => error }),
    );
    socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
    socket.on('close', () => (closed = true));
    socket.on('error', (err: NodeJS.ErrnoException) => (error = err.code ?? err.message));
    socket.once('error', reject);
  });
}

async function until(predicate: () => boolean, ms: number, label: string): Promise<void> {
  await within(
    ms,
    (async () => {
      for (let i = 0; i < 1000 && !predicate(); i++) await sleep(5);
    })(),
    label,
  );
  expect(predicate()).toBe(true);
}

describe('fault lab TCP proxy', () => {
  let echo: Server;
  let proxy: TcpProxy;

  beforeEach(async () => {
    // The proxy's reset reaches this end too.
    echo = createServer((s) => s.on('error', () => undefined).pipe(s));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', () => resolve()));
    proxy = new TcpProxy((echo.address() as AddressInfo).port);
    await proxy.listen();
  });

  afterEach(async () => {
    await proxy.close();
    await new Promise<void>((resolve) => echo.close(() => resolve()));
  });

  it('passes bytes both ways', async () => {
    const c = await open(proxy.port);
    c.socket.write('hello');
    await until(() => c.received() === 'hello', 2000, 'echo through the proxy');
    c.socket.destroy();
  });

  it('stalled, forwards nothing and closes nothing (a partition); healed, delivers what waited', async () => {
    const c = await open(proxy.port);
    proxy.setMode({ kind: 'stall' });
    c.socket.write('during');
    const late = await open(proxy.port); // a connection made during the partition is not refused
    late.socket.write('new');
    await sleep(300);
    expect([c.received(), c.closed(), late.received(), late.closed()]).toEqual([
      '',
      false,
      '',
      false,
    ]);
    proxy.setMode({ kind: 'pass' });
    await until(() => c.received() === 'during' && late.received() === 'new', 2000, 'healed');
    c.socket.destroy();
    late.socket.destroy();
  });

  it('slowed, delivers every chunk late and in order', async () => {
    const c = await open(proxy.port);
    proxy.setMode({ kind: 'slow', delayMs: 150 });
    const sent = performance.now();
    c.socket.write('a');
    await sleep(20);
    c.socket.write('b');
    await until(() => c.received() === 'ab', 3000, 'slow echo');
    // Each direction adds the delay: the echo comes back at least 2 × 150 ms after sending.
    expect(performance.now() - sent).toBeGreaterThanOrEqual(290);
    c.socket.destroy();
  });

  it('reset, ends every connection with ECONNRESET; new connections pass', async () => {
    const c = await open(proxy.port);
    c.socket.write('x');
    await until(() => c.received() === 'x', 2000, 'first echo');
    expect(proxy.reset()).toBe(1);
    await until(() => c.closed(), 2000, 'reset reaches the client');
    expect(c.error()).toBe('ECONNRESET');
    const again = await open(proxy.port);
    again.socket.write('y');
    await until(() => again.received() === 'y', 2000, 'echo after the reset');
    again.socket.destroy();
  });
});
