import { createServer, IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { labNow, ResourceMode } from '../history/history.event';
import type { HistoryWriter } from '../history/history.writer';

/** One critical section's writes, one per key, each with the key's fencing token. */
export interface WriteRequest {
  readonly process: string;
  readonly client: string;
  readonly op: number;
  readonly keys: readonly string[];
  readonly writes: readonly { key: string; fencingToken: number }[];
}

export interface WriteResponse {
  readonly accepted: readonly boolean[];
}

/**
 * The storage the locks protect: it records every write with the writer's fencing token. Fenced,
 * it refuses a write whose token is lower than the highest it accepted for that key (equal
 * passes: one holder writes several times); unfenced, it accepts everything. It never consults
 * the lock backend, as a real store would not.
 */
export class ResourceServer {
  private readonly highest = new Map<string, number>();
  private server?: Server;

  constructor(
    private mode: ResourceMode,
    private readonly history: HistoryWriter,
  ) {}

  /** Listens on 127.0.0.1 (a port the kernel picks) and resolves the port. */
  listen(): Promise<number> {
    const server = createServer((req, res) => {
      readJson(req).then(
        (body) => {
          const answer = this.handle(req.url ?? '', body);
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(answer));
        },
        (err: unknown) => {
          res.writeHead(400);
          res.end(String(err));
        },
      );
    });
    server.keepAliveTimeout = 60_000;
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
    });
  }

  /** Applies one request; exposed so the rule is tested without sockets too. */
  handle(url: string, body: unknown): unknown {
    if (url === '/mode') {
      this.mode = (body as { mode: ResourceMode }).mode;
      return { mode: this.mode };
    }
    if (url !== '/write') throw new Error(`unknown path ${url}`);
    const request = body as WriteRequest;
    const accepted = request.writes.map(({ key, fencingToken }) => {
      const highest = this.highest.get(key) ?? 0;
      const ok = this.mode === 'unfenced' || fencingToken >= highest;
      if (ok && fencingToken > highest) this.highest.set(key, fencingToken);
      this.history.log({
        t: labNow(),
        process: 'resource',
        client: request.client,
        op: request.op,
        keys: request.keys,
        event: 'write',
        key,
        fencingToken,
        accepted: ok,
        highest,
        mode: this.mode,
      });
      return ok;
    });
    return { accepted } satisfies WriteResponse;
  }

  close(): Promise<void> {
    const server = this.server;
    this.history.flush();
    if (!server) return Promise.resolve();
    server.closeAllConnections();
    return new Promise((resolve) => server.close(() => resolve()));
  }
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => {
      try {
        resolve(text === '' ? {} : JSON.parse(text));
      } catch (err) {
        reject(err);
      }
    });
    req.on('error', reject);
  });
}
