// The package as npm would publish it carries the status page's files beside the compiled
// server (scripts/copy-assets.js), and uPlot, which the page draws with, as a dependency: the
// page must work on a host with no way out to a CDN.

import test from 'ava';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

test('npm pack lists the status page, its script, style and icon, and uPlot is a runtime dependency', (t) => {
  // prepack builds dist/ first, as a publish would.
  const r = spawnSync('npm', ['pack', '--dry-run', '--json'], { cwd: ROOT, encoding: 'utf8', timeout: 110_000 });
  t.is(r.status, 0, r.stderr);
  const files = (JSON.parse(r.stdout.slice(r.stdout.indexOf('['))) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path);
  for (const f of ['dist/http/status.html', 'dist/http/status.js', 'dist/http/status.css', 'dist/http/favicon.svg', 'dist/http/server.js']) {
    t.true(files.includes(f), f);
  }
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  t.truthy(pkg.dependencies.uplot);
  t.truthy(pkg.dependencies['prom-client']);
});
