// When page 1 (the header and sqlite_schema) or the root page of `entries` is damaged, SQLite
// cannot find the table and the SQL salvage reads nothing; the daemon then reads the rows out of
// the pages themselves (src/store/pages.ts), so a bad page still costs only the entries on it,
// as the README says.

import test, { type ExecutionContext } from 'ava';
import fc from 'fast-check';
import fs from 'node:fs/promises';
import path from 'node:path';
import sqlite3 from 'sqlite3';
import { toByteString, type Entry } from '../../src/grey/entry.js';
import { memoryLogger } from '../../src/log.js';
import { scanPagesFile, scanPagesOf } from '../../src/store/pages.js';
import { openStoreRecovering } from '../../src/store/recover.js';
import { openStore } from '../../src/store/sqlite.js';
import { tempDir } from '../helpers/daemon.js';

const PAGE = 4096; // SQLite's default page size, which openStore keeps

const entry = (i: number): Entry => ({
  key: `192.0.2.${i % 250}\nmta${String(i).padStart(5, '0')}.example\n<a@sender.example>\n<b${i}@us.example>`,
  first: 1_700_000_000_000 + i, pass: 1_700_000_100_000 + i, expire: 1_700_003_000_000 + i, bcount: i % 7, pcount: (i % 3) - 2,
});

/** Keys that must come back byte for byte: 8-bit bytes, UTF-8 sequences as byte strings, overflow-sized ones. */
const ODD_KEYS = [
  toByteString('198.51.100.1\nmx.bücher.example\n<jürgen@bücher.example>\n<ö@us.example>'),
  toByteString('198.51.100.2\n邮件.example\n<用户@例子.example>\n<😀@us.example>'),
  '198.51.100.3\n\xe9\xff\x80\xa0\n<raw@8bit.example>\n<x@us.example>',
  // One overflow page, then a chain of three (4,092 bytes each at this page size).
  `198.51.100.4\n${'h'.repeat(1500)}\n<a@example.org>\n<b@us.example>`,
  `198.51.100.5\n${'\xe4'.repeat(2000)}${'helo'.repeat(1200)}\n<a@example.org>\n<b@us.example>`,
];
const odd = (k: number): Entry => ({ key: ODD_KEYS[k]!, first: k, pass: 1000 - k, expire: 2 ** 52 + k, bcount: 2 ** 31 + k, pcount: -2 });

async function realDb(file: string, entries: Entry[]): Promise<void> {
  const store = await openStore(file, { create: true, commitDelay: 3_600_000 });
  for (const e of entries) store.put(e);
  await store.close();
}

function rawAll<T>(file: string, sql: string): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(file, sqlite3.OPEN_READONLY, (err) => {
      if (err) return reject(err);
      db.all<T>(sql, (e: Error | null, rows: T[]) => db.close(() => (e ? reject(e) : resolve(rows))));
    });
  });
}

async function overwrite(file: string, at: number, bytes: Buffer): Promise<void> {
  const fh = await fs.open(file, 'r+');
  await fh.write(bytes, 0, bytes.length, at);
  await fh.close();
}

/** Deterministic noise: the same garbage every run. */
function noise(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

const byKey = (a: Entry, b: Entry) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/** Opens `file` as the daemon does and returns what the fresh database holds, and the log line. */
async function recover(t: ExecutionContext, file: string): Promise<{ entries: Entry[]; line: string }> {
  const log = memoryLogger();
  const { store, movedTo, salvaged } = await openStoreRecovering(file, { commitDelay: 3_600_000 }, log);
  t.teardown(() => store.close().catch(() => undefined));
  t.truthy(movedTo, 'the damaged file was moved aside');
  const entries: Entry[] = [];
  for await (const c of store.chunks(1000)) entries.push(...c);
  t.is(salvaged, entries.length);
  t.is(log.lines.length, 1, log.lines.join('\n'));
  await store.close();
  return { entries: entries.sort(byKey), line: log.lines[0]! };
}

test('a database whose page 1 is garbage gives back every entry, as page 1 holds only the schema', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'pfgrey.db');
  const all = Array.from({ length: 3000 }, (_, i) => entry(i));
  await realDb(file, all);
  await overwrite(file, 0, noise(PAGE, 1));
  const { entries, line } = await recover(t, file);
  t.deepEqual(entries, [...all].sort(byKey));
  t.regex(line, /database is corrupt .* copied into it the 3000 entries that could still be read$/);
});

test('a database whose page 1 is zeroed gives back every entry, the page size found by trying each', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'pfgrey.db');
  const all = Array.from({ length: 2000 }, (_, i) => entry(i));
  await realDb(file, all);
  await overwrite(file, 0, Buffer.alloc(PAGE));
  const moved = `${file}.copy`;
  await fs.copyFile(file, moved);
  const scan = await scanPagesFile(moved);
  t.is(scan.pageSizeFrom, 'guess');
  t.is(scan.pageSize, PAGE);
  t.deepEqual((await recover(t, file)).entries, [...all].sort(byKey));
});

test('a damaged root page of entries costs only the rows stored on it, and every other entry comes back exactly', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'pfgrey.db');
  const all = Array.from({ length: 3000 }, (_, i) => entry(i));
  await realDb(file, all);
  const [{ rootpage }] = await rawAll<{ rootpage: number }>(file, "SELECT rootpage FROM sqlite_schema WHERE name = 'entries'") as [{ rootpage: number }];
  t.true(rootpage > 1);
  // The rows that may be on the root page: every key whose bytes appear in it anywhere (keys
  // are unique and fixed-width, so a key that does not appear is certainly stored elsewhere).
  const root = (await fs.readFile(file)).subarray((rootpage - 1) * PAGE, rootpage * PAGE);
  const mayBeOnRoot = new Set(all.filter((e) => root.includes(Buffer.from(e.key, 'utf8'))).map((e) => e.key));
  t.true(mayBeOnRoot.size > 0 && mayBeOnRoot.size < 200, `${mayBeOnRoot.size} keys on the root page`);
  await overwrite(file, (rootpage - 1) * PAGE, Buffer.alloc(PAGE, 0xa5));

  const { entries } = await recover(t, file);
  const wanted = new Map(all.map((e) => [e.key, e] as const));
  for (const e of entries) t.deepEqual(e, wanted.get(e.key));
  const got = new Set(entries.map((e) => e.key));
  t.deepEqual(all.filter((e) => !got.has(e.key) && !mayBeOnRoot.has(e.key)).map((e) => e.key), [], 'only rows of the root page are lost');
  t.true(entries.length >= all.length - mayBeOnRoot.size, `${entries.length} of ${all.length}`);
});

test('keys of 8-bit bytes, multibyte characters and overflow pages come back byte for byte from a headless database', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'pfgrey.db');
  const all = [...Array.from({ length: 1000 }, (_, i) => entry(i)), ...ODD_KEYS.map((_, k) => odd(k))];
  await realDb(file, all);
  await overwrite(file, 0, noise(PAGE, 2));
  const { entries } = await recover(t, file);
  t.deepEqual(entries, [...all].sort(byKey));
  for (let k = 0; k < ODD_KEYS.length; k++) t.deepEqual(entries.find((e) => e.key === ODD_KEYS[k]), odd(k));
});

test('a WAL beside a headless database gives the newest version of each row, and rows only the WAL holds', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'pfgrey.db');
  const all = Array.from({ length: 2000 }, (_, i) => entry(i));
  await realDb(file, all);
  // Another connection updates every row and adds some while keeping it all in its WAL (SQLite
  // folds the WAL back in when the last connection closes, so the copy is taken while it is open).
  const db = await new Promise<sqlite3.Database>((resolve, reject) => {
    const d: sqlite3.Database = new sqlite3.Database(file, (err) => (err ? reject(err) : resolve(d)));
  });
  t.teardown(() => new Promise<void>((r) => db.close(() => r())));
  await new Promise<void>((resolve, reject) => db.exec('PRAGMA wal_autocheckpoint = 0; ' +
    // A smaller expire: the WAL's copy must win because it is newer, not because it is larger.
    'UPDATE entries SET expire = expire - 1000, pcount = 5; ' +
    "INSERT INTO entries VALUES ('203.0.113.9', 1, 2, 3, 4, 5), ('203.0.113.10', 6, 7, 8, 9, 10)",
  (err) => (err ? reject(err) : resolve())));
  const copy = path.join(dir, 'copy.db');
  await fs.copyFile(file, copy);
  await fs.copyFile(`${file}-wal`, `${copy}-wal`);
  t.true((await fs.stat(`${copy}-wal`)).size > PAGE);
  await overwrite(copy, 0, noise(PAGE, 3));

  const scan = await scanPagesFile(copy);
  t.true(scan.walPages > 0);
  const want = [
    ...all.map((e) => ({ ...e, expire: e.expire - 1000, pcount: 5 })),
    { key: '203.0.113.9', first: 1, pass: 2, expire: 3, bcount: 4, pcount: 5 },
    { key: '203.0.113.10', first: 6, pass: 7, expire: 8, bcount: 9, pcount: 10 },
  ].sort(byKey);
  t.deepEqual(scan.entries.sort(byKey), want);
  // Without its WAL the same file gives the rows as they were before.
  await fs.rm(`${copy}-wal`);
  t.deepEqual((await scanPagesFile(copy)).entries.sort(byKey), [...all].sort(byKey));
});

test('a file of garbage and a file of random bytes give no rows and do not throw', async (t) => {
  const dir = await tempDir(t);
  const text = Buffer.from('this is not a database, it is a text file that got here by mistake\n'.repeat(2000));
  const random = noise(3 << 20, 4);
  for (const bytes of [text, random, Buffer.alloc(0), Buffer.alloc(100_000), Buffer.alloc(PAGE * 4, 0x0a)]) {
    t.deepEqual((await scanPagesOf(bytes)).entries, []);
    t.deepEqual((await scanPagesOf(bytes, bytes)).entries, [], 'nor as a WAL');
  }
  const file = path.join(dir, 'pfgrey.db');
  await fs.writeFile(file, random);
  const { entries, line } = await recover(t, file);
  t.deepEqual(entries, []);
  t.notRegex(line, /copied/);
});

test('random damage to a database never makes the page reader throw or hang, nor yield a malformed entry', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'pfgrey.db');
  const all = [...Array.from({ length: 400 }, (_, i) => entry(i)), ...ODD_KEYS.map((_, k) => odd(k))];
  await realDb(file, all);
  const valid = await fs.readFile(file);
  t.deepEqual((await scanPagesOf(valid)).entries.sort(byKey), [...all].sort(byKey), 'the undamaged file reads whole');
  const pages = valid.length / PAGE;
  // Damage lands anywhere, but often on what the reader trusts most: page headers, cell pointers, the file header.
  const offset = fc.oneof(
    fc.nat({ max: valid.length - 1 }),
    fc.tuple(fc.nat({ max: pages - 1 }), fc.nat({ max: 40 })).map(([p, o]) => p * PAGE + o),
    fc.nat({ max: 99 }),
  );
  const mutation = fc.record({ at: offset, bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) });
  await fc.assert(fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 20 }), fc.option(fc.nat({ max: valid.length })),
    async (mutations, cut) => {
      const bad = Buffer.from(valid);
      for (const m of mutations) bad.set(m.bytes.subarray(0, Math.max(0, bad.length - m.at)), m.at);
      // AVA's timeout catches a reader that never finishes; every loop in it is bounded.
      const { entries } = await scanPagesOf(cut === null ? bad : bad.subarray(0, cut));
      for (const e of entries) {
        if (typeof e.key !== 'string' || e.key === '') return false;
        if (![e.first, e.pass, e.expire, e.bcount, e.pcount].every((n) => Number.isSafeInteger(n))) return false;
      }
      return new Set(entries.map((e) => e.key)).size === entries.length;
    }), { numRuns: 300 });
  t.pass();
});
