// A database file the daemon cannot use — truncated, garbage, or written by a newer pfgrey — is
// moved aside under a timestamped name with its companions, reported in one error line, and
// replaced by a fresh database, so the daemon starts instead of crash-looping. Nothing is ever
// overwritten, and any other error is still an error.

import test from 'ava';
import fs from 'node:fs/promises';
import path from 'node:path';
import sqlite3 from 'sqlite3';
import { isPfgreyError } from '../../src/errors.js';
import type { Entry } from '../../src/grey/entry.js';
import { memoryLogger } from '../../src/log.js';
import { corruptStamp, openStoreRecovering } from '../../src/store/recover.js';
import { openStore } from '../../src/store/sqlite.js';
import { tempDir } from '../helpers/daemon.js';

const NOW = Date.UTC(2024, 0, 2, 3, 4, 5, 678);
const STAMP = '20240102T030405Z';
const entry = (i: number): Entry => ({
  key: `192.0.2.${i % 250}\nmta${i}.example\n<a@sender.example>\n<b${i}@us.example>`,
  first: i, pass: i + 1, expire: i + 2, bcount: 1, pcount: 0,
});

/** A real database of `n` entries, closed. */
async function realDb(file: string, n = 3000): Promise<void> {
  const store = await openStore(file, { create: true, commitDelay: 3_600_000 });
  for (let i = 0; i < n; i++) store.put(entry(i));
  await store.close();
}

function rawOpen(file: string): Promise<sqlite3.Database> {
  return new Promise((resolve, reject) => {
    const db: sqlite3.Database = new sqlite3.Database(file, (err) => (err ? reject(err) : resolve(db)));
  });
}

function exec(db: sqlite3.Database, statements: string): Promise<void> {
  return new Promise((resolve, reject) => db.exec(statements, (err) => (err ? reject(err) : resolve())));
}

async function sql(file: string, statements: string): Promise<void> {
  const db = await rawOpen(file);
  try {
    await exec(db, statements);
  } finally {
    await new Promise<void>((r) => db.close(() => r()));
  }
}

/**
 * Opens `file` recovering, checks the one log line and that the fresh store works. The fresh
 * store may hold entries salvaged from the old file, each exactly as it was written (`entry`).
 */
async function recover(t: import('ava').ExecutionContext, file: string, reason: RegExp) {
  const log = memoryLogger();
  const { store, movedTo } = await openStoreRecovering(file, { commitDelay: 3_600_000, now: () => NOW }, log);
  t.teardown(() => store.close().catch(() => undefined));
  t.is(movedTo, `${file}.corrupt-${STAMP}`);
  t.is(log.lines.length, 1, log.lines.join('\n'));
  const line = log.lines[0]!;
  t.true(line.startsWith('error: '), line);
  t.true(line.includes(file) && line.includes(movedTo!), `names both files: ${line}`);
  t.regex(line, reason);
  t.false(line.includes('\n'));
  // The fresh database holds only intact entries, is private, and takes writes.
  const salvaged = await collect(store);
  t.log(`${salvaged.length} entries salvaged`);
  for (const e of salvaged) t.deepEqual(e, entry(Number(/mta(\d+)\./.exec(e.key)![1])));
  if (salvaged.length > 0) t.regex(line, new RegExp(`copied into it the ${salvaged.length} entr(y|ies) that could still be read`));
  else t.notRegex(line, /copied/);
  t.is((await fs.stat(file)).mode & 0o777, 0o600);
  store.put(entry(1));
  await store.flush();
  t.deepEqual(await store.get(entry(1).key), entry(1));
  await store.close();
  return { movedTo: movedTo!, line, salvaged: salvaged.length };
}

async function collect(store: { chunks(n: number): AsyncIterable<Entry[]> }): Promise<Entry[]> {
  const out: Entry[] = [];
  for await (const c of store.chunks(1000)) out.push(...c);
  return out;
}

test('a database with one damaged page in the middle keeps the entries on either side of it', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'pfgrey.db');
  await realDb(file, 20_000);
  const size = (await fs.stat(file)).size;
  const page = 4096;
  const middle = Math.floor(size / page / 2) * page;
  const fh = await fs.open(file, 'r+');
  await fh.write(Buffer.alloc(page, 0xa5), 0, page, middle);
  await fh.close();
  const { salvaged } = await recover(t, file, /database is corrupt/);
  t.true(salvaged >= 15_000 && salvaged < 20_000, `${salvaged} of 20000 entries salvaged from ${size / page} pages`);
});

test('a damaged database from a newer pfgrey is moved aside without copying its entries, which may mean something else', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'pfgrey.db');
  await realDb(file, 20_000);
  await sql(file, 'PRAGMA user_version = 99');
  const size = (await fs.stat(file)).size;
  const fh = await fs.open(file, 'r+');
  await fh.write(Buffer.alloc(4096, 0xa5), 0, 4096, Math.floor(size / 4096 / 2) * 4096);
  await fh.close();
  const { salvaged } = await recover(t, file, /database is corrupt/);
  t.is(salvaged, 0);
});

test('the moved-aside name carries the UTC time to the second', (t) => {
  t.is(corruptStamp(NOW), STAMP);
  t.regex(corruptStamp(Date.now()), /^\d{8}T\d{6}Z$/);
});

/** Ways a database file gets damaged, and the reason the one log line must give. */
const DAMAGED: Array<[what: string, damage: (file: string) => Promise<void>, reason: RegExp]> = [
  ['a truncated database', async (file) => {
    await realDb(file);
    const full = await fs.readFile(file);
    await fs.writeFile(file, full.subarray(0, Math.floor(full.length / 2)));
  }, /database is corrupt \(database disk image is malformed\)/],
  ['a database cut inside its header', async (file) => {
    await realDb(file, 10);
    await fs.truncate(file, 50);
  }, /database is corrupt/],
  ['a file of garbage', (file) => fs.writeFile(file, Buffer.from(Array.from({ length: 20_000 }, (_, i) => (i * 7919 + 13) & 0xff))),
    /database is corrupt \(file is not a database\)/],
];

for (const [what, damage, reason] of DAMAGED) {
  test(`${what} is moved aside byte for byte and a fresh database is opened`, async (t) => {
    const dir = await tempDir(t);
    const file = path.join(dir, 'pfgrey.db');
    await damage(file);
    const before = await fs.readFile(file);
    const { movedTo } = await recover(t, file, reason);
    t.deepEqual(await fs.readFile(movedTo), before);
  });
}

test('a too-new database that another process holds open moves with its -wal and -shm, which the fresh one never sees', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'pfgrey.db');
  await realDb(file, 10);
  // A newer pfgrey's connection, still open, with 500 more rows in its -wal only: SQLite
  // removes companions when the last connection closes, so only a live one leaves them.
  const other = await rawOpen(file);
  t.teardown(() => new Promise<void>((r) => other.close(() => r())));
  await exec(other, 'PRAGMA wal_autocheckpoint = 0; PRAGMA user_version = 99; BEGIN;' +
    Array.from({ length: 500 }, (_, i) => `INSERT INTO entries VALUES ('k${i}', 1, 2, 3, 4, 5);`).join('') + 'COMMIT;');
  t.true((await fs.stat(`${file}-wal`)).size > 0);
  const { movedTo, line } = await recover(t, file, /schema version 99 is newer/);
  t.regex(line, /with its -wal, -shm\)/);
  t.true((await fs.stat(`${movedTo}-wal`)).size > 0);
  t.true((await fs.stat(`${movedTo}-shm`)).isFile());
  // Once the other connection is done, the moved files hold everything it wrote.
  await new Promise<void>((r) => other.close(() => r()));
  const moved = await rawOpen(movedTo);
  const rows = await new Promise<number>((resolve, reject) => moved.get('SELECT count(*) AS n FROM entries',
    (err: Error | null, row: { n: number }) => (err ? reject(err) : resolve(row.n))));
  await new Promise<void>((r) => moved.close(() => r()));
  t.is(rows, 510);
});

test('a database of a newer schema version (user_version 99) is moved aside intact', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'pfgrey.db');
  await realDb(file, 20);
  await sql(file, 'PRAGMA user_version = 99');
  const before = await fs.readFile(file);
  const { movedTo } = await recover(t, file, /schema version 99 is newer than this pfgrey supports/);
  t.deepEqual(await fs.readFile(movedTo), before);
  // The old file still opens for a newer pfgrey: its data is all there, read-only here too.
  await t.throwsAsync(openStore(movedTo, { readonly: true }), { message: /schema version 99 is newer/ });
});

test('another program\'s SQLite file at the path is moved aside, not migrated', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'pfgrey.db');
  await sql(file, 'CREATE TABLE notes(body TEXT); INSERT INTO notes VALUES (\'keep me\')');
  const before = await fs.readFile(file);
  const { movedTo } = await recover(t, file, /not a pfgrey database: it has tables notes/);
  // Moved as it was found: not switched to WAL mode first (header bytes 18 and 19 stay 1).
  t.deepEqual(await fs.readFile(movedTo), before);
  t.true((await fs.readFile(movedTo)).includes('keep me'));
});

test('an existing moved-aside file is never overwritten: -1, then -2 is used', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'pfgrey.db');
  const base = `${file}.corrupt-${STAMP}`;
  await fs.writeFile(base, 'first');
  await fs.writeFile(`${base}-1-wal`, 'a companion of an earlier move');
  await fs.writeFile(file, 'garbage '.repeat(1000));
  const log = memoryLogger();
  const first = await openStoreRecovering(file, { now: () => NOW }, log);
  await first.store.close();
  // -1 is not free: its -wal name is taken, and the moved files keep one name between them.
  t.is(first.movedTo, `${base}-2`);
  t.is(await fs.readFile(base, 'utf8'), 'first');
  t.is(await fs.readFile(`${base}-1-wal`, 'utf8'), 'a companion of an earlier move');
  t.is((await fs.readFile(`${base}-2`, 'utf8')).slice(0, 8), 'garbage ');

  await fs.writeFile(file, 'more garbage '.repeat(1000));
  const second = await openStoreRecovering(file, { now: () => NOW }, log);
  await second.store.close();
  t.is(second.movedTo, `${base}-3`);
  t.is(log.lines.length, 2);
});

test('a healthy database opens as it is: nothing moved, nothing logged', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'pfgrey.db');
  await realDb(file, 50);
  const log = memoryLogger();
  const { store, movedTo } = await openStoreRecovering(file, {}, log);
  t.teardown(() => store.close().catch(() => undefined));
  t.is(movedTo, undefined);
  t.deepEqual(log.lines, []);
  t.is((await collect(store)).length, 50);
  t.deepEqual((await fs.readdir(dir)).filter((n) => n.includes('corrupt')), []);
});

test('a missing database is created, as openStore would', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'pfgrey.db');
  const log = memoryLogger();
  const { store, movedTo } = await openStoreRecovering(file, {}, log);
  await store.close();
  t.is(movedTo, undefined);
  t.deepEqual(log.lines, []);
  t.true((await fs.stat(file)).isFile());
});

test('other errors are thrown as they are, and nothing is moved', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'pfgrey.db');
  await fs.mkdir(file);
  const log = memoryLogger();
  const err = await t.throwsAsync(openStoreRecovering(file, {}, log));
  t.true(isPfgreyError(err) && err.code === 'E_DB_OPEN', String(err));
  t.deepEqual(log.lines, []);
  t.deepEqual(await fs.readdir(dir), ['pfgrey.db']);
});
