/**
 * A process whose only Redis Cluster backend is closed while a slot-map refresh hangs on frozen
 * nodes (the parent freezes them after "ready", then sends SIGUSR2): it must then exit by itself. Run with
 * test/faults/runtime/typescript.register.js; the library is the built dist/.
 */
import { RedisLockBackend } from 'nestjs-distributed-lock';

const say = (line: string): void => void process.stdout.write(`${line}\n`);

async function main(): Promise<void> {
  const nodes = JSON.parse(process.argv[2] ?? '[]') as { host: string; port: number }[];
  const backend = new RedisLockBackend({
    cluster: nodes,
    commandTimeout: 1_000,
    // A refresh every 100 ms, each waiting up to 2 s on a frozen node: one is in flight at close.
    clusterOptions: { slotsRefreshInterval: 100, slotsRefreshTimeout: 2_000 },
  });
  await backend.ping();
  say('ready');
  // SIGUSR2: the nodes are frozen (a signal listener keeps nothing alive, unlike stdin).
  await new Promise((resolve) => process.once('SIGUSR2', resolve));
  await new Promise((resolve) => setTimeout(resolve, 500));
  await backend.close();
  say('closed');
}

main().catch((err: unknown) => {
  say(`error ${String(err)}`);
  process.exitCode = 1;
});
