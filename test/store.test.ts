import test, { type ExecutionContext } from 'ava';
import { mkdir, mkdtemp, rm, stat, truncate, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sqlite3 from 'sqlite3';
import { PfgreyError } from '../src/errors.js';
import { greyKey, type Entry } from '../src/grey/entry.js';
import { memoryLogger } from '../src/log.js';
import { SCHEMA_VERSION, openStore } from '../src/store/sqlite.js';
import type { Store } from '../src/store/types.js';
import { eventually } from './helpers/wait.js';

async function tempDb(t: ExecutionContext, name = 'grey.db'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pfgrey-store-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return path.join(dir, name);
}

/** Closes the store at the end of the test even when an assertion failed. */
function closing(t: ExecutionContext, s: Store): Store {
  t.teardown(() => s.close().catch(() => undefined));
  return s;
}

const white = (ip: string, n = 0): Entry => ({ key: ip, first: 1_000_000 + n, pass: 2_000_000, expire: 3_000_000, bcount: 1, pcount: n });
const grey = (ip: string, to: string, n = 0): Entry => ({
  key: greyKey(ip, 'mx.example', '<a@example.org>', to),
  first: 1000 * n,
  pass: 2000,
  expire: 3000,
  bcount: 1,
  pcount: 0,
});

/** Raw SQL on the file, through a connection of its own (a second process, for the test's purpose). */
async function raw(file: string, sql: string, mode = sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE): Promise<unknown[]> {
  const db = await new Promise<sqlite3.Database>((resolve, reject) => {
    const d: sqlite3.Database = new sqlite3.Database(file, mode, (err) => (err ? reject(err) : resolve(d)));
  });
  try {
    const out: unknown[] = [];
    for (const stmt of sql.split(';').map((s) => s.trim()).filter(Boolean)) {
      out.push(...(await new Promise<unknown[]>((res, rej) => db.all(stmt, [], (err: Error | null, rows: unknown[]) => (err ? rej(err) : res(rows))))));
    }
    return out;
  } finally {
    await new Promise<void>((res) => db.close(() => res()));
  }
}

/** Waits until a background commit has emptied the queue. */
const drained = (s: Store) => eventually(() => s.pendingWrites === 0, 'the queued writes committed');

async function collect(s: Store, size: number): Promise<Entry[][]> {
  const out: Entry[][] = [];
  for await (const c of s.chunks(size)) out.push(c);
  return out;
}

async function openFails(t: ExecutionContext, file: string, opts: Parameters<typeof openStore>[1] = {}): Promise<PfgreyError> {
  const err = await t.throwsAsync(openStore(file, opts));
  t.true(err instanceof PfgreyError, `expected a PfgreyError, got ${String(err)}`);
  return err as PfgreyError;
}

test('entries written and closed are there after reopening', async (t) => {
  const file = await tempDb(t);
  const a = await openStore(file, { create: true });
  a.put(white('192.0.2.1'));
  a.put(grey('192.0.2.2', '<b@us.example>'));
  a.put(white('192.0.2.3'));
  a.delete('192.0.2.3');
  await a.close();

  const b = closing(t, await openStore(file, {}));
  t.deepEqual(await b.get('192.0.2.1'), white('192.0.2.1'));
  t.deepEqual(await b.get(grey('192.0.2.2', '<b@us.example>').key), grey('192.0.2.2', '<b@us.example>'));
  t.is(await b.get('192.0.2.3'), undefined);
});

test('create makes a file only its owner can read, but never a missing directory', async (t) => {
  const file = path.join(path.dirname(await tempDb(t)), 'var', 'db', 'pfgrey.db');
  const missing = await openFails(t, file, { create: true });
  t.is(missing.code, 'E_DB_OPEN');
  t.is(missing.message, `cannot open ${file}: directory ${path.dirname(file)} does not exist`);
  await t.throwsAsync(stat(path.dirname(file)), { code: 'ENOENT' }, 'no directory was made');
  await mkdir(path.dirname(file), { recursive: true });
  const s = await openStore(file, { create: true });
  s.put(white('192.0.2.1'));
  await s.flush();
  t.is((await stat(file)).mode & 0o777, 0o600);
  t.is((await stat(`${file}-wal`)).mode & 0o777, 0o600);
  await s.close();
});

test('a missing file without create is E_DB_OPEN in spamdb\'s words', async (t) => {
  const file = await tempDb(t);
  const r = await openFails(t, file, { readonly: true });
  t.is(r.code, 'E_DB_OPEN');
  t.is(r.message, `cannot open ${file} for reading: no such file`);
  const w = await openFails(t, file, {});
  t.is(w.message, `cannot open ${file} for writing: no such file`);
});

test('queued writes stay invisible to other connections until the group commit', async (t) => {
  const file = await tempDb(t);
  const s = closing(t, await openStore(file, { create: true, commitDelay: 3_600_000, commitBatch: 1000 }));
  for (let i = 0; i < 10; i++) s.put(white(`192.0.2.${i}`));
  t.is(s.pendingWrites, 10);
  t.deepEqual(await raw(file, 'SELECT count(*) AS n FROM entries'), [{ n: 0 }]);
  await s.flush();
  t.is(s.pendingWrites, 0);
  t.deepEqual(await raw(file, 'SELECT count(*) AS n FROM entries'), [{ n: 10 }]);
});

test('reaching commitBatch queued writes commits them without waiting for the delay', async (t) => {
  const file = await tempDb(t);
  const s = closing(t, await openStore(file, { create: true, commitDelay: 3_600_000, commitBatch: 50 }));
  for (let i = 0; i < 49; i++) s.put(white(`192.0.2.${i}`));
  t.is(s.pendingWrites, 49);
  s.put(white('192.0.2.49'));
  await drained(s);
  t.deepEqual(await raw(file, 'SELECT count(*) AS n FROM entries'), [{ n: 50 }]);
});

test('the commit delay flushes queued writes on its own', async (t) => {
  const file = await tempDb(t);
  const s = closing(t, await openStore(file, { create: true, commitDelay: 1, commitBatch: 1000 }));
  s.put(white('192.0.2.1'));
  await drained(s);
  t.deepEqual(await raw(file, 'SELECT key FROM entries'), [{ key: '192.0.2.1' }]);
});

test('get sees queued puts and deletes before they are committed', async (t) => {
  const file = await tempDb(t);
  const s = closing(t, await openStore(file, { create: true, commitDelay: 3_600_000 }));
  s.put(white('192.0.2.1'));
  await s.flush();
  s.put(white('192.0.2.2', 7));
  s.delete('192.0.2.1');
  t.is(s.pendingWrites, 2);
  t.deepEqual(await s.get('192.0.2.2'), white('192.0.2.2', 7));
  t.is(await s.get('192.0.2.1'), undefined);
});

test('a put copies the entry, so later changes to the caller\'s object are not written', async (t) => {
  const file = await tempDb(t);
  const s = closing(t, await openStore(file, { create: true, commitDelay: 3_600_000 }));
  const e = white('192.0.2.1');
  s.put(e);
  e.pcount = 99;
  await s.flush();
  t.is((await s.get('192.0.2.1'))?.pcount, 0);
});

test('writes queued while a commit runs are committed by the next one', async (t) => {
  const file = await tempDb(t);
  const s = closing(t, await openStore(file, { create: true, commitDelay: 3_600_000 }));
  for (let i = 0; i < 300; i++) s.put(white(`10.0.${i >> 8}.${i & 255}`));
  const first = s.flush();
  s.put(white('10.0.0.0', 5)); // same key as one in the running commit: the newer value must win
  s.put(white('192.0.2.9'));
  const second = s.flush();
  await Promise.all([first, second]);
  t.is(s.pendingWrites, 0);
  t.is((await s.get('10.0.0.0'))?.pcount, 5);
  t.deepEqual(await raw(file, "SELECT pcount FROM entries WHERE key = '10.0.0.0'"), [{ pcount: 5 }]);
  t.deepEqual(await raw(file, 'SELECT count(*) AS n FROM entries'), [{ n: 301 }]);
});

test('a failed commit keeps the writes queued, reports E_DB_WRITE and succeeds on retry', async (t) => {
  const file = await tempDb(t);
  const log = memoryLogger();
  const s = closing(t, await openStore(file, { create: true, commitDelay: 3_600_000, log }));
  s.put(white('192.0.2.1'));
  await s.flush();
  // Another connection takes the table away; the next commit cannot succeed.
  await raw(file, 'DROP TABLE entries');
  s.put(white('192.0.2.2'));
  s.delete('192.0.2.1');
  const err = await t.throwsAsync(s.flush());
  t.is((err as PfgreyError).code, 'E_DB_WRITE');
  t.true(err!.message.startsWith(`${file}: cannot write to database (`));
  t.is(s.pendingWrites, 2);
  t.true(log.lines.some((l) => l.startsWith('error: ') && l.includes('keeping them queued')));
  t.deepEqual(await s.get('192.0.2.2'), white('192.0.2.2'));

  await raw(
    file,
    'CREATE TABLE entries(key TEXT PRIMARY KEY, first INTEGER NOT NULL, pass INTEGER NOT NULL, expire INTEGER NOT NULL, bcount INTEGER NOT NULL, pcount INTEGER NOT NULL) WITHOUT ROWID',
  );
  await s.flush();
  t.is(s.pendingWrites, 0);
  t.deepEqual(await raw(file, 'SELECT key FROM entries'), [{ key: '192.0.2.2' }]);
});

test('chunks of an empty store yields nothing', async (t) => {
  const s = closing(t, await openStore(await tempDb(t), { create: true }));
  t.deepEqual(await collect(s, 10), []);
});

test('keys keep every byte and sort by byte value', async (t) => {
  const file = await tempDb(t);
  const s = closing(t, await openStore(file, { create: true }));
  const odd = grey('192.0.2.1', '<\xff\xe9\x01@us>');
  s.put(odd);
  s.put(grey('192.0.2.1', '<~@us>'));
  await s.close();
  const r = closing(t, await openStore(file, { readonly: true }));
  t.deepEqual(await r.get(odd.key), odd);
  t.deepEqual((await collect(r, 10)).flat().map((e) => e.key.split('\n')[3]), ['<~@us>', '<\xff\xe9\x01@us>']);
});

test('tuplesOf returns the GREY entries of one ip only, including queued ones', async (t) => {
  const file = await tempDb(t);
  const s = closing(t, await openStore(file, { create: true, commitDelay: 3_600_000 }));
  s.put(white('10.0.0.1'));
  s.put(grey('10.0.0.1', '<b@us>'));
  s.put(grey('10.0.0.1', '<a@us>'));
  s.put(grey('10.0.0.10', '<a@us>'));
  s.put(grey('10.0.0.1x', '<a@us>'));
  s.put(grey('10.0.0.', '<a@us>'));
  await s.flush();
  t.deepEqual((await s.tuplesOf('10.0.0.1')).map((e) => e.key), [grey('10.0.0.1', '<a@us>').key, grey('10.0.0.1', '<b@us>').key]);
  s.delete(grey('10.0.0.1', '<a@us>').key);
  s.put(grey('10.0.0.1', '<c@us>'));
  t.deepEqual((await s.tuplesOf('10.0.0.1')).map((e) => e.key), [grey('10.0.0.1', '<b@us>').key, grey('10.0.0.1', '<c@us>').key]);
  t.deepEqual(await s.tuplesOf('10.9.9.9'), []);
});

test('tuplesOf is answered from the key index, not a table scan', async (t) => {
  const file = await tempDb(t);
  const s = await openStore(file, { create: true });
  s.put(grey('10.0.0.1', '<a@us>'));
  await s.close();
  const plan = (await raw(
    file,
    "EXPLAIN QUERY PLAN SELECT key FROM entries WHERE key > '10.0.0.1' || char(10) AND key < '10.0.0.1' || char(11) ORDER BY key",
  )) as Array<{ detail: string }>;
  t.regex(plan.map((p) => p.detail).join(' '), /SEARCH entries USING PRIMARY KEY \(key>\? AND key<\?\)/);
});

test('close flushes queued writes, can be called twice, and ends writing', async (t) => {
  const file = await tempDb(t);
  const s = await openStore(file, { create: true, commitDelay: 3_600_000 });
  s.put(white('192.0.2.1'));
  await Promise.all([s.close(), s.close()]);
  await s.close();
  t.throws(() => s.put(white('192.0.2.2')));
  t.deepEqual(await raw(file, 'SELECT key FROM entries'), [{ key: '192.0.2.1' }]);
});

test('a read-only store lists, refuses writes, and reads a never-initialised file as empty', async (t) => {
  const file = await tempDb(t);
  await writeFile(file, '');
  const empty = closing(t, await openStore(file, { readonly: true }));
  t.deepEqual(await collect(empty, 10), []);
  t.is(await empty.get('192.0.2.1'), undefined);
  t.deepEqual(await empty.tuplesOf('192.0.2.1'), []);
  await empty.close();

  const w = await openStore(file, {});
  w.put(white('192.0.2.1'));
  await w.close();
  const r = closing(t, await openStore(file, { readonly: true }));
  t.deepEqual(await r.get('192.0.2.1'), white('192.0.2.1'));
  t.throws(() => r.put(white('192.0.2.2')), { message: /read-only/ });
});

test('a second connection reads and writes while the first holds the database open', async (t) => {
  const file = await tempDb(t);
  const daemon = closing(t, await openStore(file, { create: true, commitDelay: 3_600_000 }));
  daemon.put(white('192.0.2.1'));
  await daemon.flush();
  daemon.put(white('192.0.2.2')); // still queued in the daemon

  const reader = closing(t, await openStore(file, { readonly: true }));
  t.deepEqual((await collect(reader, 100)).flat().map((e) => e.key), ['192.0.2.1']);

  const cli = await openStore(file, {});
  cli.put(white('192.0.2.3'));
  await cli.close();
  t.deepEqual(await daemon.get('192.0.2.3'), white('192.0.2.3'));
  await daemon.flush();
  t.deepEqual((await collect(reader, 100)).flat().map((e) => e.key), ['192.0.2.1', '192.0.2.2', '192.0.2.3']);
});

test('a database from a newer pfgrey is refused with both versions named', async (t) => {
  const file = await tempDb(t);
  await raw(file, 'PRAGMA user_version = 99');
  for (const opts of [{}, { readonly: true }]) {
    const err = await openFails(t, file, opts);
    t.is(err.code, 'E_DB_SCHEMA');
    t.true(err.message.includes(file));
    t.true(err.message.includes('99'));
    t.true(err.message.includes(String(SCHEMA_VERSION)));
  }
});

test('a new database is at the current schema version', async (t) => {
  const file = await tempDb(t);
  await (await openStore(file, { create: true })).close();
  t.deepEqual(await raw(file, 'PRAGMA user_version'), [{ user_version: SCHEMA_VERSION }]);
  t.deepEqual(await raw(file, 'PRAGMA journal_mode'), [{ journal_mode: 'wal' }]);
});

test('a file of garbage is E_DB_CORRUPT on one line', async (t) => {
  const file = await tempDb(t);
  await writeFile(file, Buffer.alloc(10_000, 0x5a));
  for (const opts of [{}, { readonly: true }, { create: true }]) {
    const err = await openFails(t, file, opts);
    t.is(err.code, 'E_DB_CORRUPT');
    t.is(err.message, `${file}: database is corrupt (file is not a database)`);
  }
});

test('a truncated or damaged database is E_DB_CORRUPT at open, not mid-scan', async (t) => {
  const file = await tempDb(t);
  const s = await openStore(file, { create: true });
  for (let i = 0; i < 5000; i++) s.put(grey(`10.0.${i >> 8}.${i & 255}`, `<r${i}@us.example>`));
  await s.close();
  const whole = await readFile(file);
  t.true(whole.length > 100_000);

  for (const size of [50, 4096, Math.floor(whole.length / 2)]) {
    await writeFile(file, whole);
    await truncate(file, size);
    const err = await openFails(t, file, { readonly: true });
    t.is(err.code, 'E_DB_CORRUPT', `truncated to ${size}`);
    t.regex(err.message, /^.*: database is corrupt \([^\n]+\)$/);
  }

  const damaged = Buffer.from(whole);
  damaged.fill(0xab, 8192, 16384);
  await writeFile(file, damaged);
  const err = await openFails(t, file, {});
  t.is(err.code, 'E_DB_CORRUPT');
  t.false(err.message.includes('\n'));
});

test('an entries table of the wrong shape is E_DB_CORRUPT', async (t) => {
  const file = await tempDb(t);
  await raw(file, 'CREATE TABLE entries(key TEXT PRIMARY KEY, value BLOB); PRAGMA user_version = 1');
  const err = await openFails(t, file, {});
  t.is(err.code, 'E_DB_CORRUPT');
  t.true(err.message.startsWith(`${file}: database is corrupt (table entries has columns (key TEXT, value BLOB)`));
});

test('another application\'s SQLite file is refused, not taken over', async (t) => {
  const file = await tempDb(t);
  await raw(file, 'CREATE TABLE photos(id INTEGER PRIMARY KEY)');
  const err = await openFails(t, file, { create: true });
  t.is(err.code, 'E_DB_CORRUPT');
  t.regex(err.message, /not a pfgrey database: it has tables photos/);
  t.deepEqual(await raw(file, "SELECT name FROM sqlite_master WHERE name = 'entries'"), []);
});

test('getMany answers hundreds of keys at once, queued writes and deletions included', async (t) => {
  const s = closing(t, await openStore(await tempDb(t), { create: true }));
  for (let i = 0; i < 600; i++) s.put(white(`192.0.2.${i % 250}`, i));
  for (let i = 0; i < 600; i++) s.put(white(`10.0.${i >> 8}.${i & 255}`, i));
  await s.flush();
  s.put(white('198.51.100.1', 7)); // queued, not committed
  s.delete('10.0.0.5'); // queued deletion of a committed entry
  const keys = [...Array.from({ length: 600 }, (_, i) => `10.0.${i >> 8}.${i & 255}`), '198.51.100.1', '203.0.113.1', '10.0.0.7'];
  const got = await s.getMany(keys);
  t.is(got.size, 600 - 1 + 1);
  t.false(got.has('10.0.0.5'), 'a queued deletion hides the committed row');
  t.false(got.has('203.0.113.1'));
  t.is(got.get('198.51.100.1')?.pcount, 7);
  t.is(got.get('10.0.2.87')?.pcount, 2 * 256 + 87);
});
