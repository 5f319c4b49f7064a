/**
 * Re-judges recorded histories offline:
 *   node -r ./test/faults/runtime/typescript.register.js test/faults/checker/checker.main.ts \
 *     test/faults/results/histories/redis/*.jsonl
 * Prints the report's totals, phases and first violations as JSON.
 */
import { checkHistory } from './history.checker';
import { readHistory } from '../history/history.reader';

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write('usage: checker.main.ts <history.jsonl>...\n');
  process.exit(2);
}
const report = checkHistory(readHistory(files));
process.stdout.write(
  `${JSON.stringify({ ...report, violations: report.violations.slice(0, 10), violationCount: report.violations.length }, null, 2)}\n`,
);
