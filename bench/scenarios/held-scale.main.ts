/**
 * The held-lock scale rows alone, for work on the heap per lock or the renewal wave without a
 * full bench run (about 1 minute for the two Redis rows instead of about 9):
 *
 *   npm run build && npx tsc -p bench/tsconfig.json && node dist-bench/bench/scenarios/held-scale.main.js
 *
 * Starts its own redis-server and etcd on free 127.0.0.1 ports, runs each row in a fresh child
 * process as the full bench does, prints one JSON line per row on stdout and writes no report.
 * Rows: the full bench's (bench.config.ts), or `<locks>:<ttlMs>:<windowMs>` arguments; contenders:
 * `ours/redis`, or the `ours/*` ids that BENCH_ONLY matches. The library measured: a snapshot of
 * dist/, or the build in BENCH_LIB_DIR (say, a build of the code before a change, for a
 * before/after comparison in one session).
 */
import type { HeldScaleRow } from '../bench.config';
import { benchConfig } from '../bench.config';
import { ADAPTER_IDS, adapterInfo } from '../peers/adapter.registry';
import { heldScalePhase } from '../runner/child-process.phases';
import { BenchServers } from '../support/bench.servers';
import { removeSnapshot, repoRoot, snapshotLibrary } from '../support/library.snapshot';
import { log } from '../support/run.log';
import { errorMessage } from '../support/time.util';

const servers = new BenchServers();
let snapshotDir: string | undefined;

async function cleanup(): Promise<void> {
  await servers.stop();
  if (snapshotDir) removeSnapshot(snapshotDir);
  snapshotDir = undefined;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping servers`);
    void cleanup().finally(() => process.exit(130));
  });
}

function rowsFrom(args: readonly string[]): HeldScaleRow[] {
  const backends = ['redis', 'etcd', 'memory'] as const;
  return args.map((arg) => {
    const [locks, ttl, windowMs] = arg.split(':').map(Number);
    if (![locks, ttl, windowMs].every((n) => Number.isInteger(n) && n > 0))
      throw new TypeError(`a row is <locks>:<ttlMs>:<windowMs>, got "${arg}"`);
    return { locks, ttl, windowMs, concurrency: 64, backends };
  });
}

async function main(): Promise<void> {
  const config = benchConfig();
  const args = process.argv.slice(2);
  const heldScale = args.length > 0 ? rowsFrom(args) : config.heldScale;
  const only = config.only ?? /^ours\/redis$/;
  const ids = ADAPTER_IDS.filter((id) => {
    const info = adapterInfo(id);
    return info.kind === 'ours' && info.topology === undefined && only.test(id);
  });
  if (!process.env.BENCH_LIB_DIR) snapshotDir = snapshotLibrary(repoRoot());
  const env = await servers.start();
  const results = await heldScalePhase(ids, env, { ...config, heldScale }, servers.childPids);
  for (const result of results) process.stdout.write(`${JSON.stringify(result)}\n`);
}

main()
  .then(
    () => cleanup().then(() => process.exit(0)),
    (err: unknown) => {
      log(`held-scale run failed: ${errorMessage(err)}`);
      return cleanup().then(() => process.exit(1));
    },
  )
  .catch(() => process.exit(1));
