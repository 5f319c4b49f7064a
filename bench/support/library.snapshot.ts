import { cpSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The repository root: the nearest parent holding this package's package.json. */
export function repoRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 10; i++) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string };
      if (pkg.name === 'nestjs-distributed-lock') return dir;
    }
    dir = dirname(dir);
  }
  throw new Error('cannot find the nestjs-distributed-lock package root');
}

/** The installed version of package `name`, or `not installed`. */
export function packageVersion(root: string, name: string): string {
  try {
    const file = join(root, 'node_modules', name, 'package.json');
    return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version.replace(
      /^v/,
      '',
    );
  } catch {
    return 'not installed';
  }
}

/**
 * Copies dist/ aside and points the library loader (here and in child processes) at the copy, so
 * a concurrent `npm run build` elsewhere cannot remove files from under a running bench. Returns
 * the copy's directory, for {@link removeSnapshot}.
 */
export function snapshotLibrary(root: string): string {
  const dist = join(root, 'dist');
  if (!existsSync(join(dist, 'index.js')))
    throw new Error('dist/ is missing: run `npm run build` first');
  const snapshotDir = join(root, 'dist-bench', `lib-snapshot-${process.pid}`);
  rmSync(snapshotDir, { recursive: true, force: true });
  try {
    cpSync(dist, snapshotDir, { recursive: true });
  } catch (err) {
    removeSnapshot(snapshotDir);
    throw err;
  }
  process.env.BENCH_LIB_DIR = snapshotDir;
  return snapshotDir;
}

export function removeSnapshot(snapshotDir: string): void {
  rmSync(snapshotDir, { recursive: true, force: true });
}
