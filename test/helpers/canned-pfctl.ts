// A pfctl stand-in that answers each argument vector with canned output: `-sr` prints one file,
// `-t spamd-mywhite -T show` another, and anything it was not given fails as pfctl would. It
// records each call's arguments, so tests can see exactly what pfgrey check ran.

import fs from 'node:fs/promises';
import path from 'node:path';

export interface CannedAnswer {
  /** A file whose contents are printed on stdout. */
  stdoutFile?: string;
  stderr?: string;
  status?: number;
}

export interface CannedPfctl {
  path: string;
  /** The argument vectors of the calls so far, each joined with spaces. */
  calls(): Promise<string[]>;
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export async function cannedPfctl(dir: string, answers: Record<string, CannedAnswer>): Promise<CannedPfctl> {
  const log = path.join(dir, 'pfctl-calls');
  const cases = Object.entries(answers).map(([args, a]) => [
    `  ${quote(args)})`,
    a.stdoutFile === undefined ? '' : `    cat ${quote(a.stdoutFile)}`,
    a.stderr === undefined ? '' : `    printf '%s\\n' ${quote(a.stderr)} >&2`,
    `    exit ${a.status ?? 0} ;;`,
  ].filter((l) => l !== '').join('\n'));
  const script = path.join(dir, 'pfctl');
  await fs.writeFile(script, `#!/bin/sh
printf '%s\\n' "$*" >> ${quote(log)}
case "$*" in
${cases.join('\n')}
  *)
    echo "pfctl: no canned answer for: $*" >&2
    exit 1 ;;
esac
`, { mode: 0o755 });
  return {
    path: script,
    calls: async () => (await fs.readFile(log, 'utf8').catch(() => '')).split('\n').filter((l) => l !== ''),
  };
}
