// Prints the size of the minified build, raw and gzipped (level 9), and
// fails when the gzipped size is over the budget (6 KB = 6144 bytes).
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const BUDGET = 6144;
const file = new URL('../dist/index.min.js', import.meta.url);
const raw = readFileSync(file);
const gz = gzipSync(raw, { level: 9 }).length;
console.log(`dist/index.min.js: ${raw.length} bytes minified, ${gz} bytes gzipped (budget ${BUDGET})`);
if (gz > BUDGET) {
  console.error(`over the size budget by ${gz - BUDGET} bytes`);
  process.exit(1);
}
