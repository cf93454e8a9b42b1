// Issue 11's story, as a user met it: `pfgrey db -T -a "$(cat traps.txt)"` stored one key with
// line breaks in it and exited 0, and from then on `pfgrey db` and `pfgrey db --json` stopped
// at that key ("No from part in grey key") with exit 1, hiding every entry after it. The key
// is now refused, and a database that already holds one (written by an older version) lists
// every other entry.

import test from 'ava';
import { access, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { openStore } from '../../src/store/sqlite.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/daemon.js';
import { rawSql } from '../helpers/raw-sql.js';

const S = 1000;
const TRAPS = 'trap1@us.example\ntrap2@us.example';

test('-T -a "$(cat traps.txt)" is refused with a message and stores nothing', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'pfgrey.db');
  await writeFile(path.join(dir, 'traps.txt'), `${TRAPS}\n`);
  // Through a shell, exactly as typed; $(…) drops the last newline and keeps the others.
  const { execFile } = await import('node:child_process');
  const { CLI } = await import('../helpers/cli.js');
  const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile('/bin/sh', ['-c', 'exec "$0" "$1" db --db "$2" -T -a "$(cat "$3")"', process.execPath, CLI, db, path.join(dir, 'traps.txt')],
      { encoding: 'utf8' }, (err, _out, stderr) => resolve({ code: err ? Number(err.code) : 0, stderr }));
  });
  t.is(r.stderr, 'pfgrey db: address "trap1@us.example\\x0atrap2@us.example" contains a line break (\\x0a): one key per argument or line\n');
  t.is(r.code, 1);
  t.false(await access(db).then(() => true, () => false), 'nothing stored, no database created');

  // One address per argument is the way, and works.
  const ok = await runCli(['db', '--db', db, '-T', '-a', ...TRAPS.split('\n')]);
  t.is(ok.code, 0, ok.stderr);
  t.is((await runCli(['db', '--db', db])).stdout, TRAPS.split('\n').map((a) => `SPAMTRAP|${a}\n`).join(''));
});

test('a database that already holds such a key lists every other entry, text and JSON', async (t) => {
  const dir = await tempDir(t);
  const db = path.join(dir, 'pfgrey.db');
  const store = await openStore(db, { create: true });
  store.put({ key: '192.0.2.7\nmx.example\n<a@example.org>\n<b@us.example>', first: 1700000000 * S, pass: 1700014400 * S, expire: 1700014400 * S, bcount: 1, pcount: 0 });
  store.put({ key: '198.51.100.4', first: 1600000000 * S, pass: 1600001000 * S, expire: 1603110400 * S, bcount: 3, pcount: 2 });
  store.put({ key: 'zz@us.example', first: 0, pass: 0, expire: 0, bcount: 1, pcount: -2 });
  await store.close();
  // What the older version wrote: both addresses as one SPAMTRAP key, which reads as a GREY key
  // without a from part. It sorts before zz@us.example, which it used to hide.
  await rawSql(db, `INSERT INTO entries VALUES ('${TRAPS.split('\n').join("' || char(10) || '")}', 1700000000000, 0, 0, 1, -2);`);

  const text = await runCli(['db', '--db', db]);
  t.is(text.stdout,
    'GREY|192.0.2.7|mx.example|<a@example.org>|<b@us.example>|1700000000|1700014400|1700014400|1|0\n' +
    'WHITE|198.51.100.4|||1600000000|1600001000|1603110400|3|2\n' +
    'SPAMTRAP|zz@us.example\n');
  const warning = 'pfgrey db: No from part in grey key "trap1@us.example\\x0atrap2@us.example"\n';
  t.is(text.stderr, warning);
  t.is(text.code, 1);

  const json = await runCli(['db', '--db', db, '--json']);
  t.deepEqual(JSON.parse(json.stdout), [
    { type: 'GREY', ip: '192.0.2.7', helo: 'mx.example', from: '<a@example.org>', to: '<b@us.example>', first: 1700000000, pass: 1700014400, expire: 1700014400, bcount: 1, pcount: 0 },
    { type: 'WHITE', ip: '198.51.100.4', first: 1600000000, pass: 1600001000, expire: 1603110400, bcount: 3, pcount: 2 },
    { type: 'SPAMTRAP', address: 'zz@us.example' },
  ]);
  t.is(json.stderr, warning);
  t.is(json.code, 1);

  // The bad row can still be deleted by its exact bytes.
  const del = await runCli(['db', '--db', db, '-T', '-d', TRAPS]);
  t.is(del.code, 0, del.stderr);
  const after = await runCli(['db', '--db', db]);
  t.is(after.code, 0);
  t.is(after.stderr, '');
});
