// The error catalogue is the one list of codes users and scripts may match on: every code in it
// is used somewhere, and every error the source throws names a code from it (the compiler
// checks that half through ErrorCode; this test checks the first, so no code lingers unused).

import test from 'ava';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ERRORS } from '../src/errors.js';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src');

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...await sources(p));
    else if (e.name.endsWith('.ts') && e.name !== 'errors.ts') out.push(p);
  }
  return out;
}

test('every code of the error catalogue is raised somewhere, and none is described by an empty text', async (t) => {
  const text = (await Promise.all((await sources(SRC)).map((f) => fs.readFile(f, 'utf8')))).join('\n');
  const unused = Object.keys(ERRORS).filter((code) => !text.includes(`'${code}'`));
  t.deepEqual(unused, []);
  for (const [code, description] of Object.entries(ERRORS)) t.true(description.trim().length > 0, code);
});

test('an error names what is wrong on its own too, without the file it is about', async (t) => {
  const { PfgreyError } = await import('../src/errors.js');
  const e = new PfgreyError('E_DB_CORRUPT', '/db: database is corrupt (x)', { detail: 'database is corrupt (x)' });
  t.is(e.detail, 'database is corrupt (x)');
  t.is(new PfgreyError('E_USAGE', 'plain').detail, 'plain');
});
