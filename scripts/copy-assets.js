// Copies the status page's static files (src/http/*.html, .js, .css, .svg) beside the compiled
// modules, which tsc does not do: `node scripts/copy-assets.js dist` after the build, and
// `.build/src` for the tests. src/http/server.ts reads them from its own directory.

import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = process.argv[2];
if (!out) {
  process.stderr.write('usage: node scripts/copy-assets.js OUTDIR (dist or .build/src)\n');
  process.exit(1);
}
const from = path.join(root, 'src/http');
const to = path.resolve(root, out, 'http');
mkdirSync(to, { recursive: true });
for (const name of readdirSync(from)) {
  if (/\.(html|js|css|svg)$/.test(name)) copyFileSync(path.join(from, name), path.join(to, name));
}
