'use strict';
/**
 * Lets `node -r ./test/faults/runtime/typescript.register.js file.ts` run the lab's TypeScript
 * child processes (workers, the resource server, the runner): the machine has no ts-node, and the
 * lab's children must be real OS processes that the nemesis can SIGSTOP. Each file is transpiled
 * alone (isolatedModules, no type check: `npx tsc` and ts-jest do that) and cached by content, so
 * only the first process of a run pays for loading TypeScript. The library itself is not
 * transpiled here: children import 'nestjs-distributed-lock', which resolves to the built dist/.
 */
const { createHash } = require('node:crypto');
const { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

const cacheDir = join(tmpdir(), 'ndl-faults-ts');
let typescript;

function transpile(source, filename) {
  typescript = typescript ?? require('typescript');
  return typescript.transpileModule(source, {
    fileName: filename,
    compilerOptions: {
      target: typescript.ScriptTarget.ES2022,
      module: typescript.ModuleKind.CommonJS,
      esModuleInterop: true,
      experimentalDecorators: true,
      emitDecoratorMetadata: true,
      inlineSourceMap: true,
    },
  }).outputText;
}

require.extensions['.ts'] = function compileTypeScript(module, filename) {
  const source = readFileSync(filename, 'utf8');
  const hash = createHash('sha1').update(filename).update('\0').update(source).digest('hex');
  const cached = join(cacheDir, `${hash}.js`);
  let code;
  if (existsSync(cached)) {
    code = readFileSync(cached, 'utf8');
  } else {
    code = transpile(source, filename);
    mkdirSync(cacheDir, { recursive: true });
    // Written aside, then renamed: processes starting together never read half a file.
    const partial = `${cached}.${process.pid}.tmp`;
    writeFileSync(partial, code);
    renameSync(partial, cached);
  }
  module._compile(code, filename);
};
