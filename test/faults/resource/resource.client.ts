import { Agent, request } from 'node:http';
import type { ResourceMode } from '../history/history.event';
import type { WriteRequest, WriteResponse } from './resource.server';

/** Talks to the lab's resource server over kept-alive HTTP on 127.0.0.1. */
export class ResourceClient {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 64 });

  constructor(
    readonly port: number,
    private readonly timeoutMs = 10_000,
  ) {}

  async write(body: WriteRequest): Promise<readonly boolean[]> {
    const answer = (await this.post('/write', body)) as WriteResponse;
    return answer.accepted;
  }

  async setMode(mode: ResourceMode): Promise<void> {
    await this.post('/mode', { mode });
  }

  close(): void {
    this.agent.destroy();
  }

  private post(path: string, body: unknown): Promise<unknown> {
    const payload = JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: this.port,
          path,
          method: 'POST',
          agent: this.agent,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(payload),
          },
          timeout: this.timeoutMs,
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => {
            if (res.statusCode !== 200)
              reject(new Error(`resource ${path}: ${res.statusCode} ${text}`));
            else resolve(JSON.parse(text));
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () =>
        req.destroy(new Error(`resource ${path}: no answer in ${this.timeoutMs} ms`)),
      );
      req.on('error', reject);
      req.end(payload);
    });
  }
}
