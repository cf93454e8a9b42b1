// `pfgrey db` as a user runs it: the compiled CLI under a real terminal, where stdout is a TTY
// and output goes through the line discipline (LF becomes CRLF).

import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pty from 'node-pty';
import { DB_USAGE } from '../src/cli/db.js';
import { greyKey } from '../src/grey/entry.js';
import { openStore } from '../src/store/sqlite.js';

/** .build/test → .build/src/cli/main.js */
const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/cli/main.js');

/** Runs the CLI under a terminal; with `reply`, types its answer once the prompt is printed, as a user would. */
function runInTerminal(args: string[], reply?: { prompt: string; answer: string }): Promise<{ exitCode: number; output: string }> {
  return new Promise((resolve) => {
    const term = pty.spawn(process.execPath, [CLI, ...args], {
      name: 'xterm',
      cols: 200,
      rows: 40,
      cwd: tmpdir(),
      env: { ...process.env, PFGREY_DB: '' } as Record<string, string>,
    });
    let output = '';
    let answered = false;
    term.onData((d) => {
      output += d;
      if (reply && !answered && output.includes(reply.prompt)) {
        answered = true;
        term.write(reply.answer);
      }
    });
    term.onExit(({ exitCode }) => resolve({ exitCode, output }));
  });
}

test('pfgrey db lists, adds and deletes under a real terminal', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pfgrey-pty-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'grey.db');
  const s = await openStore(file, { create: true });
  s.put({ key: greyKey('192.0.2.7', 'mx.ex', '<a@ex>', '<b@us>'), first: 1700000000_000, pass: 1700014400_000, expire: 1700014400_000, bcount: 1, pcount: 0 });
  await s.close();

  const add = await runInTerminal(['db', '--db', file, '-t', '-a', '203.0.113.9']);
  t.is(add.exitCode, 0, add.output);

  const list = await runInTerminal(['db', '--db', file]);
  t.is(list.exitCode, 0, list.output);
  const lines = list.output.split('\r\n').filter((l) => l !== '');
  t.is(lines.length, 2, list.output);
  t.is(lines[0], 'GREY|192.0.2.7|mx.ex|<a@ex>|<b@us>|1700000000|1700014400|1700014400|1|0');
  t.regex(lines[1]!, /^TRAPPED\|203\.0\.113\.9\|\d+$/);

  const del = await runInTerminal(['db', '--db', file, '-d', '192.0.2.99']);
  t.is(del.exitCode, 1);
  t.is(del.output, 'pfgrey db: no entry for 192.0.2.99\r\n');

  const usage = await runInTerminal(['db', '--db', file, '-G']);
  t.is(usage.exitCode, 1);
  // The terminal turns each line end of the usage into CR LF.
  t.is(usage.output, `${DB_USAGE.replace(/\n/g, '\r\n')}\r\n`);
});

const PROMPT = 'pfgrey db: remove them too? [y/N] ';

/** A host whitelisted a minute ago, with the tuple that passed, which stays until greyexp. */
async function promotedHost(file: string): Promise<string> {
  const now = Date.now();
  const tuple = greyKey('192.0.2.7', 'mx.ex', '<a@ex>', '<b@us>');
  const s = await openStore(file, { create: true });
  s.put({ key: '192.0.2.7', first: now - 1800_000, pass: now - 60_000, expire: now + 36 * 86400_000, bcount: 2, pcount: 0 });
  s.put({ key: tuple, first: now - 1800_000, pass: now - 60_000, expire: now + 12600_000, bcount: 2, pcount: 0 });
  await s.close();
  return tuple;
}

test('pfgrey db -d at a terminal asks whether to remove the passed GREY tuples too, and does on y', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pfgrey-pty-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'grey.db');
  await promotedHost(file);

  const r = await runInTerminal(['db', '--db', file, '-d', '192.0.2.7'], { prompt: PROMPT, answer: 'y\r' });
  t.is(r.exitCode, 0, r.output);
  // The terminal echoes the answer; its line end comes back as CR LF.
  t.is(r.output,
    'pfgrey db: 192.0.2.7 still has 1 passed GREY tuple, from which the next scan would whitelist it again\r\n' +
    `${PROMPT}y\r\n` +
    'pfgrey db: deleted 1 passed GREY tuple of 192.0.2.7\r\n');
  const list = await runInTerminal(['db', '--db', file]);
  t.is(list.output, '');
});

test('pfgrey db -d at a terminal keeps the passed GREY tuples on N, or on a bare Enter', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pfgrey-pty-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'grey.db');
  for (const answer of ['N\r', '\r']) {
    const tuple = await promotedHost(file);
    const r = await runInTerminal(['db', '--db', file, '-d', '192.0.2.7'], { prompt: PROMPT, answer });
    t.is(r.exitCode, 0, r.output);
    t.is(r.output,
      'pfgrey db: 192.0.2.7 still has 1 passed GREY tuple, from which the next scan would whitelist it again\r\n' +
      `${PROMPT}${answer.trim()}\r\n`);
    const list = await runInTerminal(['db', '--db', file]);
    const lines = list.output.split('\r\n').filter((l) => l !== '');
    t.is(lines.length, 1, list.output);
    t.true(lines[0]!.startsWith(`GREY|${tuple.split('\n').join('|')}|`), list.output);
  }
});
