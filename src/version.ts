// The package's version, read from package.json, so that `pfgrey --version` and the policy
// door's X-Greylist header say the same. Installed, this file is dist/version.js, beside the
// package.json; built for the tests it is .build/src/version.js, one level deeper.

import { readFileSync } from 'node:fs';

function readVersion(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'pfgrey' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // Not there: try the next place.
    }
  }
  return 'unknown';
}

export const VERSION: string = readVersion();
