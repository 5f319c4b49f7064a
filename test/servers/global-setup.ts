import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEtcd } from './etcd.server';
import { startRedis } from './redis.server';
import { ServerProcess } from './server.process';

/**
 * Starts the shared Redis and etcd for the whole run (unless REDIS_URL / ETCD_HOSTS already
 * point at servers) and records their PIDs so global-teardown stops exactly those.
 */
export default async function globalSetup(): Promise<void> {
  const started: ServerProcess[] = [];
  if (!process.env.REDIS_URL) {
    const redis = await startRedis();
    started.push(redis);
    process.env.REDIS_URL = `redis://127.0.0.1:${redis.port}`;
  }
  if (!process.env.ETCD_HOSTS) {
    const etcd = await startEtcd();
    started.push(etcd);
    process.env.ETCD_HOSTS = `http://127.0.0.1:${etcd.port}`;
  }
  const stateDir = join(__dirname, '..', '..', '.test-servers');
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(
    join(stateDir, `servers-${process.pid}.json`),
    JSON.stringify(started.map((s) => ({ pid: s.pid, dir: s.dir }))),
  );
}
