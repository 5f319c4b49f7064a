import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { removeDir, stopPid } from './server.process';

/** Stops, by PID, the servers global-setup started in this jest process. */
export default async function globalTeardown(): Promise<void> {
  const file = join(__dirname, '..', '..', '.test-servers', `servers-${process.pid}.json`);
  let servers: { pid: number; dir: string }[] = [];
  try {
    servers = JSON.parse(readFileSync(file, 'utf8')) as { pid: number; dir: string }[];
  } catch {
    return;
  }
  for (const server of servers) {
    await stopPid(server.pid);
    removeDir(server.dir);
  }
  rmSync(file, { force: true });
}
