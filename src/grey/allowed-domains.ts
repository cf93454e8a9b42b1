// spamd.alloweddomains (spamd(8)): the recipient domain suffixes this site accepts mail for.
// A tuple whose recipient ends with none of them traps its sender. Unlike spamd, which reads
// the file once, the daemon reloads it on SIGHUP.

import { readFile } from 'node:fs/promises';
import { describe } from '../errors.js';
import type { Logger } from '../log.js';

/** spamd reads lines into a 1024-byte buffer; a longer line makes it ignore the whole file. */
const MAX_LINE = 1023;

/** The suffixes in `path`; a missing file means no restriction (an empty list). */
export async function loadAllowedDomains(path: string, log: Logger): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, 'latin1');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    log.error(`cannot read ${path}: ${describe(err)}; recipients are not restricted`);
    return [];
  }
  const suffixes: string[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    if (raw.length >= MAX_LINE) {
      log.error(`line too long in ${path} - file ignored (line ${i + 1})`);
      return [];
    }
    const s = raw.trim();
    if (s === '' || s.startsWith('#')) continue;
    suffixes.push(s);
  }
  // spamd logs each suffix at LOG_ERR (README.md's "Where pfgrey differs from spamd"); they are information, not errors.
  for (const s of suffixes) log.info(`got suffix ${s}`);
  return suffixes;
}
