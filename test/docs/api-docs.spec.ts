import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The API reference (`npm run docs`, typedoc.json) cannot rot: TypeDoc runs on the real config and
 * must succeed without one warning (an undocumented public symbol or a broken `{@link}` is one),
 * and the same config must fail a file whose only flaw is a link to nothing, so the check can fail.
 * TypeDoc is ESM-only, so it runs as its CLI, as `npm run docs` does.
 */

const root = join(__dirname, '..', '..');
const TYPEDOC = join(root, 'node_modules', 'typedoc', 'bin', 'typedoc');

interface TypedocRun {
  readonly code: number;
  readonly output: string;
}

function typedoc(options: string, args: readonly string[] = []): Promise<TypedocRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [TYPEDOC, '--options', options, ...args],
      // NO_COLOR: plain `[warning]` lines, without colour codes splitting the messages.
      { cwd: root, env: { ...process.env, NO_COLOR: '1' }, timeout: 120_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        resolve({ code, output: `${stdout}${stderr}` });
      },
    );
  });
}

/** TypeDoc's warning and error lines: each one fails `npm run docs`. */
function problems(run: TypedocRun): string[] {
  return run.output.split('\n').filter((line) => /^\[(warning|error)\]/.test(line));
}

describe('API reference (TypeDoc)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'api-docs-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('builds from typedoc.json with zero warnings, and its index names the main API', async () => {
    const out = join(dir, 'api');
    const run = await typedoc(join(root, 'typedoc.json'), ['--out', out]);
    expect(problems(run)).toEqual([]);
    expect(run.code).toBe(0);

    const index = await readFile(join(out, 'index.html'), 'utf8');
    expect(index).toContain('modules/nestjs-distributed-lock.html');
    const main = await readFile(join(out, 'modules', 'nestjs-distributed-lock.html'), 'utf8');
    // The main entry point's page lists its exports, each linking to its own page.
    for (const page of [
      'classes/nestjs-distributed-lock.LockService.html',
      'functions/nestjs-distributed-lock.Locked.html',
      'classes/nestjs-distributed-lock.DistributedLockModule.html',
    ]) {
      expect(main).toContain(`href="../${page}"`);
      await expect(readFile(join(out, page), 'utf8')).resolves.toContain('<html');
    }
  }, 180_000);

  it('fails a documented file whose only flaw is a link to a symbol that does not exist', async () => {
    const entry = join(dir, 'broken.entry.ts');
    await writeFile(
      entry,
      [
        '/**',
        ' * A documented entry point.',
        ' *',
        ' * @module broken',
        ' */',
        '',
        '/** Documented, but links to {@link DoesNotExist}. */',
        'export const answer = 42;',
        '',
      ].join('\n'),
    );
    await writeFile(
      join(dir, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { strict: true, target: 'ES2022' }, files: [entry] }),
    );
    // Every validation setting of the real config; only what the project's own files need
    // (entry points, tsconfig, the names excused from validation) is replaced.
    const options = join(dir, 'typedoc.json');
    await writeFile(
      options,
      JSON.stringify({
        extends: [join(root, 'typedoc.json')],
        name: 'broken',
        tsconfig: './tsconfig.json',
        entryPoints: ['./broken.entry.ts'],
        out: './broken',
        intentionallyNotExported: [],
        intentionallyNotDocumented: [],
      }),
    );
    const run = await typedoc(options);
    expect(problems(run)).toEqual([
      '[warning] Failed to resolve link to "DoesNotExist" in comment for answer',
      '[warning] Found 0 errors and 1 warnings',
    ]);
    expect(run.code).not.toBe(0);
  }, 120_000);
});
