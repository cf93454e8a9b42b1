// The raw page reader (src/store/pages.ts) on its own: SQLite's varints and records, the
// on-page share of a payload, overflow chains whole and broken, page size guessing, which copy
// of a key wins, and that a key reads back as the same string node-sqlite3 returns.

import test, { type ExecutionContext } from 'ava';
import fc from 'fast-check';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sqlite3 from 'sqlite3';
import type { Entry } from '../src/grey/entry.js';
import { decodeEntry, indexPageCells, localPayloadSize, readVarint, scanPagesFile, scanPagesOf } from '../src/store/pages.js';

const TABLE = `CREATE TABLE entries(key TEXT PRIMARY KEY, first INTEGER NOT NULL, pass INTEGER NOT NULL,
  expire INTEGER NOT NULL, bcount INTEGER NOT NULL, pcount INTEGER NOT NULL) WITHOUT ROWID`;

async function tempFile(t: ExecutionContext, name = 'grey.db'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pfgrey-pages-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return path.join(dir, name);
}

/** Runs `sql` on a new connection to `file` and returns the last statement's rows. */
function sqlite<T>(file: string, setup: string, query = 'SELECT 1'): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(file, (err) => {
      if (err) return reject(err);
      db.exec(setup, (e) => {
        if (e) return db.close(() => reject(e));
        db.all<T>(query, (e2: Error | null, rows: T[]) => db.close(() => (e2 ? reject(e2) : resolve(rows))));
      });
    });
  });
}

/** `n` rows `k00000`… made by SQLite itself, with values offset by `plus`. */
const fill = (n: number, plus = 0) => `WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < ${n - 1}) ` +
  `INSERT INTO entries SELECT printf('k%05d', i), i, i + 1, i + 2 + ${plus}, i % 5, -1 FROM c;`;

const byKey = (a: Entry, b: Entry) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

// --- varints ------------------------------------------------------------------------------------

/** SQLite's putVarint64 (util.c), the reference the reader must agree with. */
function encodeVarint(v: bigint): number[] {
  const u = BigInt.asUintN(64, v);
  if (u >> 56n !== 0n) {
    const out = new Array<number>(9);
    out[8] = Number(u & 0xffn);
    let rest = u >> 8n;
    for (let i = 7; i >= 0; i--) {
      out[i] = Number((rest & 0x7fn) | 0x80n);
      rest >>= 7n;
    }
    return out;
  }
  const out: number[] = [];
  let rest = u;
  do {
    out.unshift(Number((rest & 0x7fn) | 0x80n));
    rest >>= 7n;
  } while (rest !== 0n);
  out[out.length - 1]! &= 0x7f;
  return out;
}

test('varints of one to nine bytes read as SQLite writes them', (t) => {
  t.deepEqual(readVarint(Uint8Array.from([0x00]), 0), { value: 0, next: 1 });
  t.deepEqual(readVarint(Uint8Array.from([0x7f]), 0), { value: 127, next: 1 });
  t.deepEqual(readVarint(Uint8Array.from([0x81, 0x00]), 0), { value: 128, next: 2 });
  t.deepEqual(readVarint(Uint8Array.from([0xff, 0x7f]), 0), { value: 16_383, next: 2 });
  // The ninth byte carries eight bits, not seven.
  t.deepEqual(readVarint(Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0xff]), 0), { value: 255, next: 9 });
  t.deepEqual(readVarint(Uint8Array.from([9, 0x81, 0x00, 7]), 1), { value: 128, next: 3 }, 'read from an offset');
  fc.assert(fc.property(fc.maxSafeNat(), (n) => {
    const bytes = encodeVarint(BigInt(n));
    const got = readVarint(Uint8Array.from([...bytes, 0xaa]), 0);
    return got?.value === n && got.next === bytes.length;
  }));
});

test('a varint cut off by the end, or too large for a safe integer, reads as nothing', (t) => {
  t.is(readVarint(Uint8Array.from([0x81]), 0), undefined);
  t.is(readVarint(Uint8Array.from([0x81, 0x00]), 0, 1), undefined, 'the end given, not the buffer\'s');
  t.is(readVarint(new Uint8Array(0), 0), undefined);
  t.is(readVarint(Uint8Array.from(encodeVarint(-1n)), 0), undefined);
  t.is(readVarint(Uint8Array.from(encodeVarint(2n ** 53n)), 0), undefined);
  fc.assert(fc.property(fc.bigInt({ min: -(2n ** 63n), max: -1n }), (n) => readVarint(Uint8Array.from(encodeVarint(n)), 0) === undefined));
});

// --- records ------------------------------------------------------------------------------------

type Col = [serialType: number, body: number[]];
const text = (s: string): Col => [13 + 2 * Buffer.byteLength(s), [...Buffer.from(s)]];
const int = (v: number, type: number): Col => {
  const size = [0, 1, 2, 3, 4, 6, 8, 0, 0, 0][type]!;
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(v));
  return [type, [...b.subarray(8 - size)]];
};

function record(cols: Col[]): Uint8Array {
  const types = cols.flatMap(([st]) => encodeVarint(BigInt(st)));
  let headerSize = types.length + 1;
  if (encodeVarint(BigInt(headerSize)).length > 1) headerSize += 1;
  return Uint8Array.from([...encodeVarint(BigInt(headerSize)), ...types, ...cols.flatMap(([, body]) => body)]);
}

test('a record of a text key and five integers of every width decodes to an entry', (t) => {
  t.deepEqual(decodeEntry(record([text('1.2.3.4'), int(-1, 1), int(-300, 2), int(2 ** 23 - 1, 3), int(-(2 ** 31), 4), int(2 ** 40, 5)])),
    { key: '1.2.3.4', first: -1, pass: -300, expire: 2 ** 23 - 1, bcount: -(2 ** 31), pcount: 2 ** 40 });
  t.deepEqual(decodeEntry(record([text('é'), int(Number.MAX_SAFE_INTEGER, 6), int(Number.MIN_SAFE_INTEGER, 6), int(0, 8), int(1, 9), int(-2, 1)])),
    { key: 'é', first: Number.MAX_SAFE_INTEGER, pass: Number.MIN_SAFE_INTEGER, expire: 0, bcount: 1, pcount: -2 });
});

test('records of another shape decode to nothing', (t) => {
  const five: Col[] = [int(1, 1), int(2, 1), int(3, 1), int(4, 1), int(5, 1)];
  t.truthy(decodeEntry(record([text('k'), ...five])), 'the shape itself is accepted');
  t.is(decodeEntry(record([text('k'), ...five.slice(1)])), undefined, 'five columns');
  t.is(decodeEntry(record([text('k'), ...five, int(6, 1)])), undefined, 'seven columns');
  t.is(decodeEntry(record([text(''), ...five])), undefined, 'an empty key');
  t.is(decodeEntry(record([[14, [0x6b]], ...five])), undefined, 'a blob key');
  t.is(decodeEntry(record([int(7, 1), ...five])), undefined, 'an integer key');
  t.is(decodeEntry(record([text('k'), [7, [0x3f, 0xf0, 0, 0, 0, 0, 0, 0]], ...five.slice(1)])), undefined, 'a float');
  t.is(decodeEntry(record([text('k'), [0, []], ...five.slice(1)])), undefined, 'a NULL');
  t.is(decodeEntry(record([text('k'), [6, [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]], ...five.slice(1)])), undefined, 'beyond a safe integer');
  const good = record([text('k'), ...five]);
  t.is(decodeEntry(good.subarray(0, good.length - 1)), undefined, 'a body cut short');
  t.is(decodeEntry(Uint8Array.from([...good, 0])), undefined, 'a byte too many');
  t.is(decodeEntry(new Uint8Array(0)), undefined);
});

// --- pages and overflow -------------------------------------------------------------------------

test('the share of a payload kept on the page follows the file format\'s X, M and K', (t) => {
  // U = 4096: X = 4084*64/255 - 23 = 1002, M = 4084*32/255 - 23 = 489.
  t.is(localPayloadSize(1002, 4096), 1002);
  t.is(localPayloadSize(1003, 4096), 489, 'K = 1003 > X, so M');
  t.is(localPayloadSize(489 + 4092 + 100, 4096), 589, 'K = M + 100 fits, so K');
  t.is(localPayloadSize(100, 512), 100);
  t.is(localPayloadSize(200, 512), 39, 'U = 512: X = 97, M = 39, K = 39 + 161 % 508 > X');
});

/** A database of SQLite's making with a 9,000-byte key (two overflow pages), and where its overflow chain starts. */
async function longKeyDb(t: ExecutionContext): Promise<{ bytes: Buffer; rows: Entry[]; first: number; longKey: string }> {
  const file = await tempFile(t);
  const longKey = `198.51.100.4\n${'h'.repeat(9000)}`;
  const rows = await sqlite<Entry>(file, `PRAGMA page_size = 4096; ${TABLE}; ${fill(300)}` +
    `INSERT INTO entries VALUES ('${longKey.replace('\n', "' || char(10) || '")}', 1, 2, 3, 4, 5);`, 'SELECT * FROM entries ORDER BY key');
  const bytes = await readFile(file);
  for (let p = 1; p < bytes.length / 4096; p++) {
    for (const cell of indexPageCells(bytes.subarray(p * 4096, (p + 1) * 4096), 4096) ?? []) {
      if (cell.overflow !== 0) return { bytes, rows, first: cell.overflow, longKey };
    }
  }
  throw new Error('no overflowing cell');
}

test('a key spread over a chain of overflow pages reads back whole', async (t) => {
  const { bytes, rows, first, longKey } = await longKeyDb(t);
  t.not(bytes.readUInt32BE((first - 1) * 4096), 0, 'the chain has a second page');
  const { entries } = await scanPagesOf(bytes);
  t.deepEqual(entries.sort(byKey), rows);
  t.is(entries.find((e) => e.key.length > 9000)?.key, longKey);
});

test('a broken overflow chain costs its one key: a loop, a cut, a page past the end or page 1', async (t) => {
  const { bytes, rows, first } = await longKeyDb(t);
  const others = rows.filter((r) => r.key.length < 9000);
  const second = bytes.readUInt32BE((first - 1) * 4096);
  for (const [what, at, next] of [
    ['the first page points to itself', first, first],
    ['the chain ends a page early', first, 0],
    ['the next page is past the end', first, 0x7fffffff],
    ['the next page is page 1', first, 1],
  ] as Array<[string, number, number]>) {
    const bad = Buffer.from(bytes);
    bad.writeUInt32BE(next, (at - 1) * 4096);
    t.deepEqual((await scanPagesOf(bad)).entries.sort(byKey), others, what);
  }
  // The last page's pointer is never followed: the payload is whole before it is read.
  const bad = Buffer.from(bytes);
  bad.writeUInt32BE(first, (second - 1) * 4096);
  t.deepEqual((await scanPagesOf(bad)).entries.sort(byKey), rows, 'a last page pointing back');
});

test('a header-less database of 1 KiB or 64 KiB pages is read under the page size that parses most pages', async (t) => {
  for (const size of [1024, 65_536]) {
    const file = await tempFile(t, `p${size}.db`);
    const rows = await sqlite<Entry>(file, `PRAGMA page_size = ${size}; ${TABLE}; ${fill(size === 1024 ? 3000 : 12_000)}`,
      'SELECT * FROM entries ORDER BY key');
    const bytes = await readFile(file);
    bytes.fill(0x5a, 0, size);
    const scan = await scanPagesOf(bytes);
    t.is(scan.pageSizeFrom, 'guess');
    t.is(scan.pageSize, size);
    t.deepEqual(scan.entries.sort(byKey), rows, `${size}-byte pages`);
  }
});

test('another program\'s tables and indexes, and sqlite_schema, give no rows', async (t) => {
  const file = await tempFile(t);
  await sqlite(file, 'CREATE TABLE notes(body TEXT, a INTEGER, b INTEGER, c INTEGER, d INTEGER, e INTEGER); ' +
    'CREATE INDEX notes_body ON notes(body); CREATE TABLE pairs(k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID; ' +
    "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < 999) INSERT INTO notes SELECT 'n' || i, 1, 2, 3, 4, 5 FROM c; " +
    "INSERT INTO pairs SELECT body, a FROM notes;");
  t.deepEqual((await scanPagesFile(file)).entries, []);
});

test('a key reads back as the string node-sqlite3 returns for it, invalid UTF-8 included', async (t) => {
  const file = await tempFile(t);
  // Bytes SQLite stores as they are but that are not UTF-8: a lone continuation byte, a cut
  // sequence, an overlong form, a surrogate; and a NUL inside the text.
  const rows = await sqlite<Entry>(file, `${TABLE}; ` +
    "INSERT INTO entries VALUES (CAST(X'3139322E302E322E310AC3FF0A80E2828041' AS TEXT), 1, 2, 3, 4, 5); " +
    "INSERT INTO entries VALUES (CAST(X'C0AFEDA080F09F98' AS TEXT), 1, 2, 3, 4, 5); " +
    "INSERT INTO entries VALUES (CAST(X'6100620A' AS TEXT), 1, 2, 3, 4, 5); " +
    "INSERT INTO entries VALUES ('caf' || char(233), 1, 2, 3, 4, 5);", 'SELECT * FROM entries ORDER BY key');
  t.is(rows.length, 4);
  t.deepEqual((await scanPagesFile(file)).entries.sort(byKey), [...rows].sort(byKey));
});

test('of two copies of a key the one with the larger expire is kept, whichever is read first', async (t) => {
  // A stale copy on a freed page: here, the pages of an older database appended to a newer one
  // and the other way round.
  const older = await tempFile(t, 'older.db');
  const newer = await tempFile(t, 'newer.db');
  await sqlite(older, `${TABLE}; ${fill(2000)}`);
  const rows = await sqlite<Entry>(newer, `${TABLE}; ${fill(2000, 1000)}`, 'SELECT * FROM entries ORDER BY key');
  const [a, b] = await Promise.all([readFile(older), readFile(newer)]);
  for (const [what, bytes] of [['stale pages last', Buffer.concat([b, a.subarray(4096)])], ['stale pages first', Buffer.concat([a, b.subarray(4096)])]] as const) {
    t.deepEqual((await scanPagesOf(bytes)).entries.sort(byKey), rows, what);
  }
});

test('a scan of a database file reads the same rows SQL does, through its WAL', async (t) => {
  const file = await tempFile(t);
  const rows = await sqlite<Entry>(file, `PRAGMA journal_mode = WAL; ${TABLE}; ${fill(500)}`, 'SELECT * FROM entries ORDER BY key');
  const copy = `${file}.copy`;
  await copyFile(file, copy);
  t.deepEqual((await scanPagesFile(copy)).entries.sort(byKey), rows);
  t.deepEqual((await scanPagesFile(`${file}.missing`)).entries, [], 'a missing file scans as empty');
});
