// Runs `pfgrey check` in this process (checkCommand), as root unless the hooks say otherwise.

import { PassThrough, Readable } from 'node:stream';
import { checkCommand, type CheckHooks } from '../../src/cli/check.js';

export interface CheckRun {
  lines: string[];
  stderr: string;
  status: number;
}

export async function check(argv: string[], hooks: CheckHooks = {}): Promise<CheckRun> {
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  err.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const io = { stdout: out, stderr: err, stdin: Readable.from([]), env: {} };
  const status = await checkCommand(argv, io, { euid: 0, bannerWait: 300, ...hooks });
  return { lines: stdout.split('\n').filter((l) => l !== ''), stderr, status };
}
