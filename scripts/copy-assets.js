// Copies the status page's static files (src/http/*.html, .js, .css, .svg) beside the compiled
// modules in dist/, which tsc does not do (`npm run build` runs it after tsc), so they ship in
// the package. src/http/server.ts reads them from its own directory; the tests' build in
// .build/ reads them from src/http/ itself.

import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = process.argv[2];
if (!out) {
  process.stderr.write('usage: node scripts/copy-assets.js OUTDIR (dist)\n');
  process.exit(1);
}
const from = path.join(root, 'src/http');
const to = path.resolve(root, out, 'http');
mkdirSync(to, { recursive: true });
for (const name of readdirSync(from)) {
  if (/\.(html|js|css|svg)$/.test(name)) copyFileSync(path.join(from, name), path.join(to, name));
}
