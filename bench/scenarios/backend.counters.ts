import { get } from 'node:http';
import { Redis } from 'ioredis';
import type { BackendKind, BenchEnv } from '../peers/lock-adapter.interface';

/** Cumulative request counts per command (Redis) or gRPC method (etcd). */
export type CommandCounts = Record<string, number>;

/** Redis `INFO commandstats`: calls per command, lower-case names. */
export async function redisCommandCounts(client: Redis): Promise<CommandCounts> {
  const info = await client.info('commandstats');
  const counts: CommandCounts = {};
  for (const line of info.split(/\r?\n/)) {
    const match = /^cmdstat_([^:]+):calls=(\d+)/.exec(line);
    if (match) counts[match[1]] = Number(match[2]);
  }
  return counts;
}

/** GETs `url` (loopback only) and resolves the body. */
export function fetchText(url: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get(url, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve(body));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

/**
 * etcd's Prometheus endpoint (`/metrics` on the client URL): gRPC messages received per method,
 * which counts unary calls and every message of a stream (such as lease keep-alives) alike.
 */
export async function etcdMethodCounts(host: string): Promise<CommandCounts> {
  const text = await fetchText(`${host}/metrics`, 5_000);
  const counts: CommandCounts = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith('grpc_server_msg_received_total{')) continue;
    const method = /grpc_method="([^"]+)"/.exec(line)?.[1];
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (method && Number.isFinite(value)) counts[method] = (counts[method] ?? 0) + value;
  }
  return counts;
}

/** Reads backend request counters for `kind`; undefined for the memory backend. */
export class BackendCounters {
  private constructor(
    private readonly kind: BackendKind,
    private readonly env: BenchEnv,
    private readonly redis: Redis | undefined,
  ) {}

  static async open(kind: BackendKind, env: BenchEnv): Promise<BackendCounters> {
    let redis: Redis | undefined;
    if (kind === 'redis') {
      redis = new Redis(env.redisUrl, { lazyConnect: true });
      await redis.connect();
    }
    return new BackendCounters(kind, env, redis);
  }

  async read(): Promise<CommandCounts | undefined> {
    if (this.kind === 'redis' && this.redis) return redisCommandCounts(this.redis);
    if (this.kind === 'etcd') return etcdMethodCounts(this.env.etcdHost);
    return undefined;
  }

  close(): void {
    this.redis?.disconnect();
  }
}

/** Per-command rate between two readings, dropping the counters' own reads and zero rates. */
export function rates(
  before: CommandCounts,
  after: CommandCounts,
  seconds: number,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, value] of Object.entries(after)) {
    if (name === 'info') continue;
    const delta = value - (before[name] ?? 0);
    if (delta > 0) out[name] = delta / seconds;
  }
  return out;
}
