// Builds the package: dist/index.js (ES module), dist/index.min.js (the
// same, minified), type declarations next to them, and the copy of the
// minified file that the collab example embeds. CI runs it and fails when
// the committed copy differs.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { copyFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
process.chdir(root);
export const example = '../examples/collab/static/fanout-client.js';

rmSync('dist', { recursive: true, force: true });
execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', '.'], { stdio: 'inherit' });
const common = {
  entryPoints: ['src/index.ts'],
  bundle: true,
  format: 'esm',
  target: 'es2020',
  legalComments: 'none',
  logLevel: 'warning',
};
await build({ ...common, outfile: 'dist/index.js' });
await build({ ...common, outfile: 'dist/index.min.js', minify: true });
copyFileSync('dist/index.min.js', example);
