import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';

/**
 * Every ```ts block of the README compiles as a user would paste it: strict, with decorators and
 * their metadata, against lib/ through the same `paths` as tsconfig.json. Each block is a module
 * of its own, so a block declares (or imports) everything it uses. A block whose first line is
 * `// continues the previous block` is appended to the block before it and compiled with it.
 * Other fences (bash, plain) are not TypeScript and are skipped.
 */

const root = join(__dirname, '..', '..');
const CONTINUES = '// continues the previous block';

/** One fence's content and the README line of its first content line (1-based). */
interface Segment {
  readonly line: number;
  readonly code: string;
}

/** What is compiled as one file: a block, plus the blocks that continue it. */
interface Snippet {
  readonly source: string;
  readonly segments: Segment[];
}

function tsSnippets(markdown: string, source: string): Snippet[] {
  const lines = markdown.split('\n');
  const snippets: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^( *)(`{3,}|~{3,})\s*([\w-]*)/.exec(lines[i]);
    if (!open) continue;
    const [, indent, fence, lang] = open;
    const body: string[] = [];
    let end = i + 1;
    while (end < lines.length && !lines[end].trimStart().startsWith(fence)) {
      body.push(lines[end].startsWith(indent) ? lines[end].slice(indent.length) : lines[end]);
      end++;
    }
    if (/^(ts|typescript)$/i.test(lang)) {
      const segment = { line: i + 2, code: body.join('\n') };
      const previous = snippets[snippets.length - 1];
      if (body[0]?.trim() === CONTINUES) {
        if (!previous) throw new Error(`${source}:${i + 1}: "${CONTINUES}" with no block before`);
        previous.segments.push(segment);
      } else {
        snippets.push({ source, segments: [segment] });
      }
    }
    i = end;
  }
  return snippets;
}

/** The compiled text of a snippet, and a map from its lines back to the markdown's. */
function snippetText(snippet: Snippet): { text: string; markdownLine: (line: number) => number } {
  const starts: number[] = [];
  let offset = 0;
  for (const segment of snippet.segments) {
    starts.push(offset);
    offset += segment.code.split('\n').length;
  }
  return {
    text: snippet.segments.map((s) => s.code).join('\n'),
    markdownLine: (line) => {
      let k = starts.length - 1;
      while (k > 0 && starts[k] > line) k--;
      return snippet.segments[k].line + line - starts[k];
    },
  };
}

/** Compiles every snippet in one program; the diagnostics of each, as `file:line: message`. */
function compileSnippets(snippets: readonly Snippet[]): {
  global: string[];
  perSnippet: string[][];
} {
  const config = ts.readConfigFile(join(root, 'tsconfig.json'), (p) => ts.sys.readFile(p));
  if (config.error)
    throw new Error(ts.flattenDiagnosticMessageText(config.error.messageText, '\n'));
  const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, root);
  const options: ts.CompilerOptions = {
    ...parsed.options,
    strict: true,
    experimentalDecorators: true,
    emitDecoratorMetadata: true,
    // What an application's sources and specs see: Node's globals and jest's.
    types: ['node', 'jest'],
    noEmit: true,
    moduleDetection: ts.ModuleDetectionKind.Force,
  };
  const files = snippets.map((snippet, n) => ({
    name: join(root, `${snippet.source}.snippet-${n}.ts`),
    ...snippetText(snippet),
  }));
  const virtual = new Map(files.map((f) => [f.name, f.text]));
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, language, ...rest) => {
    const text = virtual.get(name);
    return text === undefined
      ? getSourceFile(name, language, ...rest)
      : ts.createSourceFile(name, text, language);
  };
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => virtual.has(name) || fileExists(name);
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => virtual.get(name) ?? readFile(name);

  const program = ts.createProgram(
    files.map((f) => f.name),
    options,
    host,
  );
  const format = (d: ts.Diagnostic, where: string): string =>
    `${where}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
  return {
    global: [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()].map((d) =>
      format(d, 'options'),
    ),
    perSnippet: files.map((file, n) => {
      const sourceFile = program.getSourceFile(file.name);
      if (!sourceFile) throw new Error(`${file.name} is not in the program`);
      return [
        ...program.getSyntacticDiagnostics(sourceFile),
        ...program.getSemanticDiagnostics(sourceFile),
      ].map((d) => {
        const line =
          d.start === undefined ? 0 : sourceFile.getLineAndCharacterOfPosition(d.start).line;
        return format(d, `${snippets[n].source}:${file.markdownLine(line)}`);
      });
    }),
  };
}

const readme = readFileSync(join(root, 'README.md'), 'utf8');
const readmeSnippets = tsSnippets(readme, 'README.md');

/** The checker's own evidence: a snippet that must fail, and a continuation that must join. */
const PROBE = [
  '```bash',
  'npm test',
  '```',
  '```ts',
  'export class PaymentsService {',
  '  async pay(orderId: string) {',
  '    await this.gateway.charge(orderId);',
  '  }',
  '}',
  '```',
  '```ts',
  "import { LockService } from 'nestjs-distributed-lock';",
  'export const ttl = 1000;',
  '```',
  'Text between the two halves.',
  '```ts',
  CONTINUES,
  'export async function run(locks: LockService): Promise<number> {',
  "  const lock = await locks.acquire('k', { ttl });",
  '  return lock.fencingToken;',
  '}',
  '```',
].join('\n');
const probeSnippets = tsSnippets(PROBE, 'probe.md');

describe('README code blocks', () => {
  let result: ReturnType<typeof compileSnippets>;
  beforeAll(() => {
    // One program for all: the type-check of lib/ and of Nest's types is paid once.
    result = compileSnippets([...readmeSnippets, ...probeSnippets]);
  }, 60_000);

  it('finds every ts block of the README', () => {
    const fences = readme.match(/^ *```(ts|typescript)\s*$/gim) ?? [];
    expect(fences.length).toBeGreaterThan(0);
    expect(readmeSnippets.flatMap((s) => s.segments)).toHaveLength(fences.length);
  });

  it('compiles under valid options', () => {
    expect(result.global).toEqual([]);
  });

  it.each(readmeSnippets.map((snippet, n) => [snippet.segments[0].line, n] as const))(
    'the block at README.md line %d compiles',
    (_line, n) => {
      expect(result.perSnippet[n]).toEqual([]);
    },
  );

  it('fails a block that does not compile, at its markdown line, and joins continued blocks', () => {
    expect(probeSnippets.map((s) => s.segments.map((segment) => segment.line))).toEqual([
      [5],
      [12, 17],
    ]);
    const [broken, continued] = result.perSnippet.slice(readmeSnippets.length);
    expect(broken).toEqual([
      "probe.md:7: Property 'gateway' does not exist on type 'PaymentsService'.",
    ]);
    // `LockService` and `ttl` come from the first half: the halves were compiled as one file.
    expect(continued).toEqual([]);
  });
});
