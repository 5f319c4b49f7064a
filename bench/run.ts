/**
 * `npm run bench`: starts its own redis-server and etcd on free 127.0.0.1 ports (and, for the
 * topology contenders, a Sentinel topology and five Redlock masters), runs every
 * scenario for our library, each peer (defaults and tuned) and the raw floors, writes
 * bench/results/latest.md and latest.json, and stops the servers by PID (also on error).
 *
 * BENCH_QUICK=1: a ~1-minute smoke run, written to $BENCH_OUT or a temporary directory.
 * BENCH_ONLY=<regex>: only the contenders whose id matches. BENCH_OUT=<dir>: where to write.
 * BENCH_ONLY=faults: only the fault scenarios, written to faults.md / faults.json (see
 * bench.config.ts).
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { benchConfig } from './bench.config';
import { benchResults, faultResults } from './report/results.builder';
import { writeBenchReport, writeFaultReport } from './report/results.writer';
import { runFaultScenarios, runScenarios } from './runner/scenario.runner';
import { BenchServers } from './support/bench.servers';
import { removeSnapshot, repoRoot, snapshotLibrary } from './support/library.snapshot';
import { log, warn } from './support/run.log';
import { errorMessage } from './support/time.util';

const servers = new BenchServers();
let snapshotDir: string | undefined;

let cleaned = false;
async function cleanup(): Promise<void> {
  if (cleaned) return;
  cleaned = true;
  await servers.stop();
  if (snapshotDir) removeSnapshot(snapshotDir);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping servers`);
    void cleanup().finally(() => process.exit(130));
  });
}
process.on('unhandledRejection', (reason) => warn(`unhandled rejection: ${errorMessage(reason)}`));
process.on('uncaughtException', (err) => warn(`uncaught exception: ${errorMessage(err)}`));

async function main(): Promise<void> {
  const startedAt = new Date().toISOString();
  const config = benchConfig();
  const root = repoRoot();
  const outDir =
    process.env.BENCH_OUT ??
    (config.quick ? join(tmpdir(), 'ndl-bench-quick') : join(root, 'bench', 'results'));
  log(
    `${config.quick ? 'quick' : 'full'}${config.faultsOnly ? ' fault-only' : ''} run; results to ${outDir}`,
  );
  snapshotDir = snapshotLibrary(root);

  const env = await servers.start();
  const counter = new Redis(env.redisUrl, { lazyConnect: true });
  await counter.connect();
  const context = { env, counter, config, servers };
  try {
    if (config.faultsOnly) {
      writeFaultReport(outDir, faultResults(startedAt, config, await runFaultScenarios(context)));
    } else {
      writeBenchReport(outDir, benchResults(startedAt, config, root, await runScenarios(context)));
    }
  } finally {
    counter.disconnect();
  }
}

main()
  .then(
    () => cleanup().then(() => process.exit(0)),
    (err: unknown) => {
      log(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      return cleanup().then(() => process.exit(1));
    },
  )
  .catch(() => process.exit(1));
