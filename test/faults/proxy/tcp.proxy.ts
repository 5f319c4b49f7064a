import { connect, createServer, Server, Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/** What the proxy does with the bytes of its connections. */
export type ProxyMode =
  | { readonly kind: 'pass' }
  /** Forwards nothing and closes nothing: to both ends it looks like a partition. */
  | { readonly kind: 'stall' }
  /** Delivers every chunk `delayMs` late, in order. */
  | { readonly kind: 'slow'; readonly delayMs: number };

/** One direction of one connection: chunks waiting for their delivery time. */
class Pipe {
  private readonly queue: { chunk: Buffer; at: number }[] = [];
  private timer?: NodeJS.Timeout;
  private lastAt = 0;

  constructor(
    private readonly from: Socket,
    private readonly to: Socket,
    private readonly proxy: TcpProxy,
  ) {
    from.on('data', (chunk: Buffer) => {
      const mode = proxy.mode;
      const delay = mode.kind === 'slow' ? mode.delayMs : 0;
      this.lastAt = Math.max(this.lastAt, performance.now() + delay);
      this.queue.push({ chunk, at: this.lastAt });
      this.pump();
    });
  }

  pump(): void {
    if (this.proxy.mode.kind === 'stall') {
      // Stop reading too: bytes pile up in the kernel's buffers, as on a cut link, and flow on
      // (late) when it heals, as TCP would retransmit them.
      this.from.pause();
      return;
    }
    this.from.resume();
    clearTimeout(this.timer);
    this.timer = undefined;
    const now = performance.now();
    while (this.queue.length > 0 && this.queue[0].at <= now) {
      if (!this.to.destroyed) this.to.write(this.queue.shift()!.chunk);
      else this.queue.shift();
    }
    if (this.queue.length > 0) {
      this.timer = setTimeout(() => this.pump(), Math.max(1, this.queue[0].at - now));
    }
  }

  stop(): void {
    clearTimeout(this.timer);
    this.queue.length = 0;
  }
}

/**
 * A TCP proxy of the lab's own on 127.0.0.1, between one worker's clients and a server: the
 * nemesis stalls it (a partition: nothing forwarded, nothing closed), slows it, or resets every
 * connection through it (RST on both sides). A server restarted on the same port is reached
 * again by new connections.
 */
export class TcpProxy {
  mode: ProxyMode = { kind: 'pass' };
  private readonly connections = new Set<{ client: Socket; upstream: Socket; pipes: Pipe[] }>();
  private server?: Server;
  port = 0;

  constructor(private readonly upstreamPort: number) {}

  async listen(port = 0): Promise<number> {
    const server = createServer((client) => this.accept(client));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    return this.port;
  }

  /** Switches every connection, open and future, to `mode`. */
  setMode(mode: ProxyMode): void {
    this.mode = mode;
    for (const c of this.connections) for (const p of c.pipes) p.pump();
  }

  /** Resets every open connection (RST to both ends); later connections pass. */
  reset(): number {
    const n = this.connections.size;
    for (const c of [...this.connections]) this.drop(c, true);
    return n;
  }

  get openConnections(): number {
    return this.connections.size;
  }

  async close(): Promise<void> {
    for (const c of [...this.connections]) this.drop(c, false);
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    const upstream = connect({ host: '127.0.0.1', port: this.upstreamPort });
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const entry = { client, upstream, pipes: [] as Pipe[] };
    entry.pipes = [new Pipe(client, upstream, this), new Pipe(upstream, client, this)];
    this.connections.add(entry);
    const end = (): void => this.drop(entry, false);
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    for (const p of entry.pipes) p.pump();
  }

  private drop(entry: { client: Socket; upstream: Socket; pipes: Pipe[] }, reset: boolean): void {
    if (!this.connections.delete(entry)) return;
    for (const p of entry.pipes) p.stop();
    for (const socket of [entry.client, entry.upstream]) {
      if (reset && !socket.destroyed) socket.resetAndDestroy();
      else socket.destroy();
    }
  }
}
