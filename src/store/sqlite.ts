// The greylist store on SQLite. The daemon and `pfgrey db` open the same file at the same time,
// so the file runs in WAL mode (readers never block the writer) with a busy timeout (two writers
// wait for each other instead of failing). Writes are grouped: the daemon records a tuple per
// SMTP transaction, and one transaction per few hundred milliseconds costs far less than one fsync
// per tuple.

import { constants } from 'node:fs';
import { lstat, open, rm } from 'node:fs/promises';
import sqlite3 from 'sqlite3';
import { DEFAULTS } from '../config/defaults.js';
import { PfgreyError, describe } from '../errors.js';
import type { Entry } from './types.js';
import { silentLogger, type Logger } from '../log.js';
import { checkDatabaseFiles, resolveDatabasePath, SQLITE_OPEN_NOFOLLOW } from './files.js';
import type { Abandoned, CloseOptions, FileProblem, FileStore, StoreWrite } from './types.js';
import { GroupCommitStore, type GroupCommitSettings } from './group-commit.js';
import { isDeleteIf, overlayKeys, overlayRange, queuedEntry, type QueuedWrite } from './pending.js';

export interface OpenStoreOptions {
  /** Create the file (mode 0600) when missing; its directory must exist. Ignored with readonly. */
  create?: boolean;

  /** Open for listing only: no schema changes, put/delete throw. */
  readonly?: boolean;
  /** Longest time a queued write waits before it is committed (ms). */
  commitDelay?: number;
  /** Queue length that triggers a commit at once. */
  commitBatch?: number;
  /** Where failed background commits are reported. */
  log?: Logger;
  /** Told how long each transaction (group commit or update) took, and whether it committed: /metrics. */
  onCommit?: (seconds: number, ok: boolean) => void;
}

/**
 * Schema migrations, in order; migration i brings `PRAGMA user_version` from i to i + 1. Never
 * edit one that has shipped: a database in the field has already run it. Add a new one instead.
 */
const MIGRATIONS: readonly string[] = [
  // 1: the logical record of spamd's db (§6.1). WITHOUT ROWID because every lookup and every
  // scan is by key: the table is the key index, nothing is stored twice.
  `CREATE TABLE entries(
     key TEXT PRIMARY KEY,
     first INTEGER NOT NULL,
     pass INTEGER NOT NULL,
     expire INTEGER NOT NULL,
     bcount INTEGER NOT NULL,
     pcount INTEGER NOT NULL
   ) WITHOUT ROWID`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** The shape of `entries` this code reads and writes; anything else is refused at open. */
const ENTRY_COLUMNS: ReadonlyArray<{ name: string; type: string; pk: number }> = [
  { name: 'key', type: 'TEXT', pk: 1 },
  { name: 'first', type: 'INTEGER', pk: 0 },
  { name: 'pass', type: 'INTEGER', pk: 0 },
  { name: 'expire', type: 'INTEGER', pk: 0 },
  { name: 'bcount', type: 'INTEGER', pk: 0 },
  { name: 'pcount', type: 'INTEGER', pk: 0 },
];

/**
 * Rows per multi-row conditional DELETE (deleteIf). Each statement execution is a round trip
 * through libuv's thread pool, and 128 × 6 parameters (a row a conditional delete must still
 * match) stays under SQLite's oldest variable limit (999). Rows written and keys deleted go as
 * one JSON parameter per step instead (putAll, deleteAll).
 */
const ROWS_PER_STATEMENT = 128;

/** Entries per step of a commit: a few milliseconds of main-thread work (binding, JSON). */
const ENTRIES_PER_STEP = 8 * ROWS_PER_STATEMENT;

const COLUMNS = 'key, first, pass, expire, bcount, pcount';

type Row = Entry;

type Write = QueuedWrite;

const rowParams = (e: Entry): unknown[] => [e.key, e.first, e.pass, e.expire, e.bcount, e.pcount];

// --- promise wrappers over the callback API -------------------------------------------------

function openDb(path: string, mode: number): Promise<sqlite3.Database> {
  return new Promise((resolve, reject) => {
    const db: sqlite3.Database = new sqlite3.Database(path, mode, (err) => (err ? reject(err) : resolve(db)));
  });
}

function run(db: sqlite3.Database, sql: string, params: unknown[] = []): Promise<void> {
  return new Promise((resolve, reject) => db.run(sql, params, (err: Error | null) => (err ? reject(err) : resolve())));
}

function all<T>(db: sqlite3.Database, sql: string, params: unknown[] = []): Promise<T[]> {
  return new Promise((resolve, reject) =>
    db.all<T>(sql, params, (err: Error | null, rows: T[]) => (err ? reject(err) : resolve(rows))),
  );
}

function prepare(db: sqlite3.Database, sql: string): Promise<sqlite3.Statement> {
  return new Promise((resolve, reject) => {
    const st: sqlite3.Statement = db.prepare(sql, (err: Error | null) => (err ? reject(err) : resolve(st)));
  });
}

function stRun(st: sqlite3.Statement, params: unknown[]): Promise<void> {
  return new Promise((resolve, reject) => st.run(params, (err: Error | null) => (err ? reject(err) : resolve())));
}

/** Runs a write statement; resolves with the number of rows it changed. */
function stChanges(st: sqlite3.Statement, params: unknown[]): Promise<number> {
  return new Promise((resolve, reject) =>
    st.run(params, function (this: sqlite3.RunResult, err: Error | null) {
      if (err) reject(err);
      else resolve(this.changes);
    }),
  );
}

/**
 * A list of strings or rows as one JSON parameter, for the statements that take a whole batch
 * through json_each: one round trip whatever the batch's size. A lone surrogate is replaced as
 * Node replaces it when it binds a string, so a key reaches SQLite as the same bytes both ways.
 */
const jsonParam = (items: ReadonlyArray<string | Entry>): string =>
  JSON.stringify(items.map((i) => (typeof i === 'string' ? wellFormed(i)
    : [wellFormed(i.key), i.first, i.pass, i.expire, i.bcount, i.pcount])));

const wellFormed = (s: string): string => (s as string & { toWellFormed(): string }).toWellFormed();

// `all` rather than `get`: a statement left mid-result keeps a read transaction open, which in
// WAL mode pins an old snapshot and stops checkpoints. `all` always runs to the end and resets.
function stAll<T>(st: sqlite3.Statement, params: unknown[]): Promise<T[]> {
  return new Promise((resolve, reject) =>
    st.all<T>(params, (err: Error | null, rows: T[]) => (err ? reject(err) : resolve(rows))),
  );
}

function finalize(st: sqlite3.Statement): Promise<void> {
  return new Promise((resolve) => st.finalize(() => resolve()));
}

function closeDb(db: sqlite3.Database): Promise<void> {
  return new Promise((resolve, reject) => db.close((err) => (err ? reject(err) : resolve())));
}

// --- error mapping ----------------------------------------------------------------------------

function sqliteCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** node-sqlite3 prefixes messages with the result code name; users want the words only. */
function sqliteMessage(err: unknown): string {
  return describe(err).replace(/^SQLITE_[A-Z_]+: /, '');
}

function isCorruption(err: unknown): boolean {
  const code = sqliteCode(err);
  return code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB';
}

function corrupt(path: string, what: string, cause?: unknown): PfgreyError {
  // quick_check reports over several lines under a `*** in database main ***` heading; the
  // message must stay one line.
  const oneLine = what
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^\*\*\* in database \w+ \*\*\*$/.test(l))
    .join('; ');
  return new PfgreyError('E_DB_CORRUPT', `${path}: database is corrupt (${oneLine})`, { cause, detail: `database is corrupt (${oneLine})` });
}

/** Node's fs messages read `EACCES: permission denied, open '/x'`; keep the middle words. */
function fsReason(err: unknown): string {
  const code = sqliteCode(err);
  if (code === 'ENOENT') return 'no such file';
  const m = /^[A-Z0-9_]+: ([^,]+)/.exec(describe(err));
  return m ? m[1]! : describe(err);
}

/** The first `n` bytes of a file and its size; undefined when it is shorter than that. */
async function fileHead(path: string, n: number): Promise<{ head: Buffer; size: number } | undefined> {
  // Never through a symbolic link: this runs as root on a file in the unprivileged user's directory.
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const head = Buffer.alloc(n);
    if ((await fh.read(head, 0, n, 0)).bytesRead < n) return undefined;
    return { head, size: (await fh.stat()).size };
  } finally {
    await fh.close();
  }
}

/** The first 16 bytes of every SQLite database file. */
const SQLITE_MAGIC = 'SQLite format 3\0';

/** Magic numbers of db(3) hash and btree files (4.4BSD db 1.85, Berkeley DB 2 and later). */
const BERKELEY_MAGIC = new Set([0x061561, 0x053162]);

/**
 * spamd keeps its database in db(3) format at /var/db/spamd. A user who points --db there
 * means "use my spamd data"; treating the file as a damaged database would move it away from
 * under spamd and spamdb. So it is refused, with the way to carry its entries over.
 */
export async function refuseBerkeleyDb(path: string, shown = path): Promise<void> {
  // A file that cannot be read here is for openDb to report.
  const file = await fileHead(path, 16).catch(() => undefined);
  if (!file) return;
  const { head } = file;
  // 1.85 keeps the magic at offset 0, Berkeley DB 2+ at 12; either byte order.
  for (const at of [0, 12]) {
    if (BERKELEY_MAGIC.has(head.readUInt32LE(at)) || BERKELEY_MAGIC.has(head.readUInt32BE(at))) {
      throw new PfgreyError('E_DB_FOREIGN', `${shown} is a Berkeley DB file, as spamd keeps its database; ` +
        'pfgrey keeps its own in SQLite: give --db a path of its own and carry the entries over with ' +
        '`spamdb | pfgrey db --import -`');
    }
  }
}

/** An error met while reading or opening, as the one PfgreyError the caller reports. */
function readError(path: string, err: unknown, mode: 'reading' | 'writing'): PfgreyError {
  if (err instanceof PfgreyError) return err;
  if (isCorruption(err)) return corrupt(path, sqliteMessage(err), err);
  return new PfgreyError('E_DB_OPEN', `cannot open ${path} for ${mode}: ${sqliteMessage(err)}`, { cause: err });
}

// --- salvage ----------------------------------------------------------------------------------

/** Most zeros a salvage copy is padded with: a damaged header must not make a huge file. */
const SALVAGE_PAD_MAX = 64 * 1024 * 1024;

/** Rows per read while salvaging; a read that fails is retried in steps ten times smaller. */
const SALVAGE_STEP = 500;

function validRow(r: Row): boolean {
  return typeof r.key === 'string' && r.key !== '' &&
    [r.first, r.pass, r.expire, r.bcount, r.pcount].every((n) => typeof n === 'number' && Number.isSafeInteger(n));
}

/**
 * SQLite refuses a file cut short of the size its header gives (a crash or a full disk during
 * a copy). A copy padded with zeros to that size opens: the missing pages read as damaged, and
 * the pages before them can be read. Returns the copy's path, or undefined when `path` needs
 * no padding or is not an SQLite file.
 */
async function paddedCopy(path: string): Promise<string | undefined> {
  const file = await fileHead(path, 100);
  if (!file) return undefined;
  const { head, size } = file;
  if (head.toString('latin1', 0, 16) !== SQLITE_MAGIC) return undefined;
  const pageSize = head.readUInt16BE(16) === 1 ? 65_536 : head.readUInt16BE(16);
  if (pageSize < 512 || (pageSize & (pageSize - 1)) !== 0) return undefined;
  // SQLite trusts the header's page count only while the field at 92 matches the change
  // counter at 24; and however damaged the header, the copy grows by a bounded amount.
  const counted = head.readUInt32BE(92) === head.readUInt32BE(24) ? head.readUInt32BE(28) * pageSize : 0;
  const want = Math.min(Math.max(counted, Math.ceil(size / pageSize) * pageSize), size + SALVAGE_PAD_MAX);
  if (size >= want) return undefined;
  const copy = `${path}.salvage`;
  try {
    await exclusiveCopy(path, copy, want);
    await exclusiveCopy(`${path}-wal`, `${copy}-wal`).catch(() => undefined);
  } catch (err) {
    await removeCopy(copy); // a full disk, say: salvage what the file as it is gives
    throw err;
  }
  return copy;
}

/**
 * Copies `src` to `dst`, a name that must be new, then sets the copy's length. Both are opened
 * without following links and the copy with O_EXCL: this runs as root in the unprivileged
 * user's directory, where a link planted under the copy's predictable name would otherwise
 * have root write a database into whatever file it names.
 */
async function exclusiveCopy(src: string, dst: string, length?: number): Promise<void> {
  const from = await open(src, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    if (!(await from.stat()).isFile()) throw new Error(`${src} is not a plain file`);
    const to = await open(dst, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      const buf = Buffer.alloc(1024 * 1024);
      for (let pos = 0; ;) {
        const { bytesRead } = await from.read(buf, 0, buf.length, pos);
        if (bytesRead === 0) break;
        await to.write(buf, 0, bytesRead, pos);
        pos += bytesRead;
      }
      if (length !== undefined) await to.truncate(length);
    } finally {
      await to.close();
    }
  } finally {
    await from.close();
  }
}

/**
 * Reads what can still be read from a damaged pfgrey database: its entries in key order up to
 * the first unreadable page, then from the other end back to it, each side in smaller steps as
 * it nears the damage. The rows on the damaged pages are lost; the rest, usually most of the
 * file, are handed to `take` in batches. Never throws: an unreadable file yields nothing.
 */
export async function salvageEntries(path: string, take: (rows: Entry[]) => void): Promise<{ rows: number; complete: boolean }> {
  const copy = await paddedCopy(path).catch(() => undefined);
  let db: sqlite3.Database;
  try {
    db = await openDb(copy ?? path, sqlite3.OPEN_READONLY | SQLITE_OPEN_NOFOLLOW);
  } catch {
    await removeCopy(copy);
    return { rows: 0, complete: false };
  }
  // A newer pfgrey's entries may mean something else: those stay in the moved file.
  if (await userVersion(db).catch(() => 0) > SCHEMA_VERSION) {
    await closeDb(db).catch(() => undefined);
    await removeCopy(copy);
    return { rows: 0, complete: false };
  }
  let rows = 0;
  const keep = (batch: Row[]) => {
    const good = batch.filter(validRow).map((r) => ({ ...r }));
    rows += good.length;
    if (good.length > 0) take(good);
  };
  /** Reads from one end towards the other; the last key read, and whether it reached the end. */
  const walk = async (descending: boolean, bound: string | undefined): Promise<{ last: string | undefined; done: boolean }> => {
    let last: string | undefined;
    let step = SALVAGE_STEP;
    for (;;) {
      const where: string[] = [];
      const params: string[] = [];
      // Forwards: above the last key read. Backwards: below it, and above where forwards stopped.
      if (!descending && last !== undefined) (where.push('key > ?'), params.push(last));
      if (descending && last !== undefined) (where.push('key < ?'), params.push(last));
      if (descending && bound !== undefined) (where.push('key > ?'), params.push(bound));
      let batch: Row[];
      try {
        batch = await all<Row>(db, `SELECT ${COLUMNS} FROM entries${where.length ? ` WHERE ${where.join(' AND ')}` : ''}` +
          ` ORDER BY key${descending ? ' DESC' : ''} LIMIT ${step}`, params);
      } catch {
        if (step === 1) return { last, done: false };
        step = Math.ceil(step / 10);
        continue;
      }
      keep(batch);
      if (batch.length < step) return { last, done: true };
      last = batch[batch.length - 1]!.key;
    }
  };
  try {
    const forwards = await walk(false, undefined);
    if (forwards.done) return { rows, complete: true };
    await walk(true, forwards.last);
    return { rows, complete: false };
  } catch {
    return { rows, complete: false };
  } finally {
    await closeDb(db).catch(() => undefined);
    await removeCopy(copy);
  }
}

async function removeCopy(copy: string | undefined): Promise<void> {
  if (copy === undefined) return;
  for (const sfx of ['', '-wal', '-shm']) await rm(copy + sfx, { force: true }).catch(() => undefined);
}

// --- opening ----------------------------------------------------------------------------------

async function ensureFile(path: string, shown: string, create: boolean, mode: 'reading' | 'writing'): Promise<void> {
  if (create) {
    try {
      // Created here, before SQLite sees it, so the file never exists with umask permissions:
      // the database holds every correspondent's address. SQLite gives -wal/-shm the same mode.
      // O_EXCL: a symbolic link in the file's place is not followed, and checkDatabaseFiles
      // refuses it next.
      const fh = await open(path, 'wx', 0o600);
      await fh.close();
    } catch (err) {
      if (sqliteCode(err) !== 'EEXIST') {
        throw new PfgreyError('E_DB_OPEN', `cannot open ${shown} for ${mode}: ${fsReason(err)}`, { cause: err });
      }
    }
    return;
  }
  try {
    const st = await lstat(path);
    if (st.isDirectory()) throw Object.assign(new Error('EISDIR: is a directory'), { code: 'EISDIR' });
  } catch (err) {
    throw new PfgreyError('E_DB_OPEN', `cannot open ${shown} for ${mode}: ${fsReason(err)}`, { cause: err });
  }
}

async function userVersion(db: sqlite3.Database): Promise<number> {
  const rows = await all<{ user_version: number }>(db, 'PRAGMA user_version');
  return rows[0]?.user_version ?? 0;
}

function tooNew(path: string, found: number): PfgreyError {
  const detail = `database schema version ${found} is newer than this pfgrey supports (${SCHEMA_VERSION}); use a newer pfgrey`;
  return new PfgreyError('E_DB_SCHEMA', `${path}: ${detail}`, { detail });
}

async function tableNames(db: sqlite3.Database): Promise<string[]> {
  const rows = await all<{ name: string }>(
    db,
    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name",
  );
  return rows.map((r) => r.name);
}

/** Refuses to turn some other application's SQLite file into a pfgrey database. */
async function assertNotForeign(path: string, db: sqlite3.Database): Promise<void> {
  const names = await tableNames(db);
  if (names.length > 0) throw corrupt(path, `not a pfgrey database: it has tables ${names.join(', ')} but no schema version`);
}

async function migrate(path: string, db: sqlite3.Database): Promise<void> {
  // IMMEDIATE takes the write lock first, so a daemon and a CLI creating the same new file at
  // once migrate it exactly once: the second re-reads the version after the first committed.
  await run(db, 'BEGIN IMMEDIATE');
  try {
    const v = await userVersion(db);
    if (v > SCHEMA_VERSION) throw tooNew(path, v);
    if (v === 0) await assertNotForeign(path, db);
    for (let i = v; i < SCHEMA_VERSION; i++) await run(db, MIGRATIONS[i]!);
    // PRAGMA takes no bound parameters; the value is our own integer.
    await run(db, `PRAGMA user_version = ${SCHEMA_VERSION}`);
    await run(db, 'COMMIT');
  } catch (err) {
    await run(db, 'ROLLBACK').catch(() => undefined);
    throw err;
  }
}

async function checkShape(path: string, db: sqlite3.Database): Promise<void> {
  const cols = await all<{ name: string; type: string; pk: number }>(db, 'PRAGMA table_info(entries)');
  if (cols.length === 0) throw corrupt(path, 'table entries is missing');
  const same =
    cols.length === ENTRY_COLUMNS.length &&
    ENTRY_COLUMNS.every((want, i) => {
      const got = cols[i]!;
      return got.name === want.name && got.type.toUpperCase() === want.type && (got.pk > 0 ? 1 : 0) === want.pk;
    });
  if (!same) {
    const found = cols.map((c) => `${c.name} ${c.type}`).join(', ');
    throw corrupt(path, `table entries has columns (${found}), expected (${ENTRY_COLUMNS.map((c) => `${c.name} ${c.type}`).join(', ')})`);
  }
}

/**
 * Opens (and with `create`, creates) the greylist database and brings its schema up to date.
 * Every problem with the file is found here, as one PfgreyError: E_DB_OPEN (missing, no
 * permission), E_DB_CORRUPT (not SQLite, damaged, wrong table shape), E_DB_SCHEMA (written by a
 * newer pfgrey).
 */
export async function openStore(path: string, opts: OpenStoreOptions = {}): Promise<FileStore> {
  const readonly = opts.readonly ?? false;
  const mode = readonly ? 'reading' : 'writing';
  const create = !readonly && (opts.create ?? false);
  // Missing directories are never created here: `pfgrey db -a` with a mistyped --db must be an
  // error, not a second database in a new tree (the daemon makes its directory: daemon-store.ts).
  const real = await resolveDatabasePath(path);
  await ensureFile(real, path, create, mode);
  await checkDatabaseFiles(real, path, opts.log ?? silentLogger);
  await refuseBerkeleyDb(real, path);

  let db: sqlite3.Database;
  try {
    db = await openDb(real, (readonly ? sqlite3.OPEN_READONLY : sqlite3.OPEN_READWRITE) | SQLITE_OPEN_NOFOLLOW);
  } catch (err) {
    throw readError(path, err, mode);
  }

  try {
    await run(db, `PRAGMA busy_timeout = ${Math.trunc(DEFAULTS.busyTimeout)}`);
    // The first statement that reads the file: garbage and foreign files fail here.
    await tableNames(db);
    // A full page walk. It costs tens of milliseconds per 10 MB and runs off the event loop, and
    // it turns a damaged file into one clear message now instead of a failure mid-scan later.
    const check = await all<{ quick_check: string }>(db, 'PRAGMA quick_check(1)');
    const verdict = check[0]?.quick_check ?? 'no result from quick_check';
    if (verdict !== 'ok') throw corrupt(path, verdict);
    // Whose file this is, before anything is changed in it: another program's SQLite file
    // given as --db must be refused as it was found, not switched to WAL mode first.
    const found = await userVersion(db);
    if (found > SCHEMA_VERSION) throw tooNew(path, found);
    if (found === 0) await assertNotForeign(path, db);
    else if (found === SCHEMA_VERSION) await checkShape(path, db);

    let empty = false;
    if (!readonly) {
      await all(db, 'PRAGMA journal_mode = WAL');
      await run(db, 'PRAGMA synchronous = NORMAL');
      const v = await userVersion(db);
      if (v > SCHEMA_VERSION) throw tooNew(path, v);
      if (v < SCHEMA_VERSION) await migrate(path, db);
      // SQLite quietly opens a file it may not write read-only; every later commit would then
      // fail until a restart. Write once now (a header field, rolled back), so that is one clear
      // error instead; taking the write lock alone does not tell.
      try {
        await run(db, 'BEGIN IMMEDIATE');
        try {
          await run(db, `PRAGMA user_version = ${SCHEMA_VERSION}`);
        } finally {
          await run(db, 'ROLLBACK').catch(() => undefined);
        }
      } catch (err) {
        if (sqliteCode(err) === 'SQLITE_READONLY') {
          throw new PfgreyError('E_DB_OPEN', `cannot open ${path} for writing: the file is read-only`, { cause: err });
        }
        throw err;
      }
    } else {
      const v = found;
      if (v === 0) {
        // A file created but never initialised (a daemon that died at once): nothing to list.
        empty = true;
      } else if (v < SCHEMA_VERSION) {
        throw new PfgreyError(
          'E_DB_SCHEMA',
          `${path}: database schema version ${v} is older than this pfgrey's (${SCHEMA_VERSION}); open it once for writing to upgrade`,
        );
      }
    }
    if (!empty) await checkShape(path, db);
    return await SqliteStore.create(path, db, {
      real,
      identity: await fileIdentity(real),
      readonly,
      empty,
      commitDelay: opts.commitDelay ?? DEFAULTS.commitDelay,
      commitBatch: opts.commitBatch ?? DEFAULTS.commitBatch,
      log: opts.log ?? silentLogger,
      onCommit: opts.onCommit,
    });
  } catch (err) {
    await closeDb(db).catch(() => undefined);
    throw readError(path, err, mode);
  }
}

// --- the file underneath ----------------------------------------------------------------------

interface FileIdentity {
  dev: number;
  ino: number;
  size: number;
}

async function fileIdentity(path: string): Promise<FileIdentity> {
  const st = await lstat(path);
  return { dev: st.dev, ino: st.ino, size: st.size };
}

// --- the store --------------------------------------------------------------------------------

interface Statements {
  get: sqlite3.Statement;
  lookup: sqlite3.Statement;
  putAll: sqlite3.Statement;
  deleteAll: sqlite3.Statement;
  firstPage: sqlite3.Statement;
  nextPage: sqlite3.Statement;
  range: sqlite3.Statement;
  deleteIfOne: sqlite3.Statement;
  deleteIfMany: sqlite3.Statement;
}

interface StoreSettings extends GroupCommitSettings {
  /** The path SQLite opened (the directory resolved): where fileProblem looks. */
  real: string;
  /** The file as it was when opened, to tell when it was truncated, replaced or removed. */
  identity: FileIdentity;
  empty: boolean;
}

class SqliteStore extends GroupCommitStore implements FileStore {
  private constructor(
    path: string,
    private readonly db: sqlite3.Database,
    private readonly st: Statements | null,
    protected override readonly settings: StoreSettings,
  ) {
    super(path, settings);
  }

  static async create(path: string, db: sqlite3.Database, settings: StoreSettings): Promise<SqliteStore> {
    if (settings.empty) return new SqliteStore(path, db, null, settings);
    // The primary key finds each row (one index search per term: SQLite's OR optimisation);
    // the other columns make it the row that was read.
    const unchanged = (n: number) =>
      Array(n).fill('(key = ? AND first = ? AND pass = ? AND expire = ? AND bcount = ? AND pcount = ?)').join(' OR ');
    const made: Partial<Statements> = {};
    const sql: Record<keyof Statements, string> = {
      get: `SELECT ${COLUMNS} FROM entries WHERE key = ?`,
      // The rows of a JSON list of keys, after a first row (key NULL) that holds the connection's
      // data_version as it was for this read: it changes when another connection commits.
      lookup: `SELECT NULL AS key, data_version AS first, 0 AS pass, 0 AS expire, 0 AS bcount, 0 AS pcount ` +
        `FROM pragma_data_version UNION ALL ` +
        `SELECT ${COLUMNS} FROM entries WHERE key IN (SELECT value FROM json_each(?1))`,
      // A JSON list of rows written, and of keys deleted, only while data_version is still ?2:
      // no other connection has committed since the read that decided them. With ?2 null,
      // whatever it is (a transaction that holds the write lock: the group commit).
      putAll: `INSERT OR REPLACE INTO entries (${COLUMNS}) ` +
        `SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5 FROM json_each(?1) ` +
        `WHERE ?2 IS NULL OR (SELECT data_version FROM pragma_data_version) = ?2`,
      deleteAll: `DELETE FROM entries WHERE key IN (SELECT value FROM json_each(?1)) ` +
        `AND (?2 IS NULL OR (SELECT data_version FROM pragma_data_version) = ?2)`,
      firstPage: `SELECT ${COLUMNS} FROM entries ORDER BY key LIMIT ?`,
      nextPage: `SELECT ${COLUMNS} FROM entries WHERE key > ? ORDER BY key LIMIT ?`,
      range: `SELECT ${COLUMNS} FROM entries WHERE key > ? AND key < ? ORDER BY key`,
      deleteIfOne: `DELETE FROM entries WHERE ${unchanged(1)}`,
      deleteIfMany: `DELETE FROM entries WHERE ${unchanged(ROWS_PER_STATEMENT)}`,
    };
    try {
      for (const name of Object.keys(sql) as Array<keyof Statements>) {
        // A read-only connection can prepare writes; it only fails when they run, and it never runs them.
        made[name] = await prepare(db, sql[name]);
      }
    } catch (err) {
      await Promise.all(Object.values(made).map((s) => finalize(s)));
      throw err;
    }
    return new SqliteStore(path, db, made as Statements, settings);
  }

  async getMany(keys: readonly string[]): Promise<Map<string, Entry>> {
    const st = this.open();
    return overlayKeys(this.pending, keys, async (wanted) => (st ? (await this.read(() => this.lookup(st, wanted))).rows : []));
  }

  async get(key: string): Promise<Entry | undefined> {
    if (this.pending.has(key)) return queuedEntry(this.pending.get(key));
    const st = this.open();
    if (!st) return undefined;
    const rows = await this.read(() => stAll<Row>(st.get, [key]));
    return rows[0];
  }

  update(keys: readonly string[], decide: (current: Map<string, Entry>) => StoreWrite[]): Promise<boolean> {
    this.writable();
    const st = this.st;
    if (!st) return Promise.reject(new PfgreyError('E_DB_WRITE', `${this.path}: the database was opened read-only`));
    // One transaction at a time on this connection. A COMMIT here either commits or fails:
    // no outcome is ever lost, so update's `once` is not needed.
    return this.exclusive(() => this.transact(st, keys, decide)).then(() => true);
  }

  async *chunks(size: number): AsyncIterable<Entry[]> {
    const st = this.open();
    if (!st) return;
    const limit = Math.max(1, Math.trunc(size));
    let last: string | undefined;
    for (;;) {
      const after = last;
      const rows = await this.read(() =>
        after === undefined ? stAll<Row>(st.firstPage, [limit]) : stAll<Row>(st.nextPage, [after, limit]),
      );
      if (rows.length === 0) return;
      last = rows[rows.length - 1]!.key;
      yield rows;
      if (rows.length < limit) return;
    }
  }

  async tuplesOf(ip: string): Promise<Entry[]> {
    const st = this.open();
    const prefix = `${ip}\n`;
    // Every GREY key of `ip` starts with `ip\n`; '\x0b' is the next character after '\n', so
    // the range is exactly those keys and the primary key index answers it without a scan.
    const rows = st ? await this.read(() => stAll<Row>(st.range, [prefix, `${ip}\x0b`])) : [];
    return overlayRange(this.pending, rows, prefix);
  }

  /**
   * What happened to the file since it was opened, if anything a running daemon cannot go on
   * with: removed, replaced by another file, or cut shorter. SQLite never shrinks a database
   * it does not vacuum (pfgrey never does), so a smaller file was truncated from outside; the
   * connection would go on writing into the -wal and fail every read of the lost pages.
   */
  async fileProblem(): Promise<FileProblem | undefined> {
    let now: FileIdentity;
    try {
      now = await fileIdentity(this.settings.real);
    } catch (err) {
      return sqliteCode(err) === 'ENOENT' ? { kind: 'removed', reason: 'the file was removed' }
        : { kind: 'damaged', reason: `the file cannot be examined (${fsReason(err)})` };
    }
    const was = this.settings.identity;
    if (now.dev !== was.dev || now.ino !== was.ino) return { kind: 'replaced', reason: 'the file was replaced by another one' };
    if (now.size < was.size) return { kind: 'damaged', reason: `the file was truncated from ${was.size} to ${now.size} bytes` };
    was.size = now.size;
    // Overwritten in place: the connection may go on answering from its cache and its -wal
    // for a long time, so the header is read again (16 bytes, once a scan).
    if (now.size > 0) {
      const file = await fileHead(this.settings.real, 16).catch(() => undefined);
      if (file && file.head.toString('latin1') !== SQLITE_MAGIC) return { kind: 'damaged', reason: 'the file\'s header is no longer an SQLite header' };
    }
    return undefined;
  }

  /**
   * Stops committing (the file is being given up) and hands back the queued writes, to be
   * replayed into the store that replaces this one. The connection stays open until `close`:
   * SQLite checkpoints and deletes the -wal when its last connection closes, so it is closed
   * only once what can be read of the files has been.
   */
  async abandon(): Promise<Abandoned> {
    // Reads go on (the caller may copy what the connection still reads); writes and commits end.
    const writes = await this.giveUpQueue();
    const close = () => (this.closing ??= (async () => {
      if (this.st) await Promise.all(Object.values(this.st).map((st: sqlite3.Statement) => finalize(st)));
      await closeDb(this.db).catch(() => undefined);
    })());
    return { writes, close };
  }

  close(opts: CloseOptions = {}): Promise<void> {
    if (!this.closing) this.closing = this.shutdown(opts.retryUntil);
    return this.closing;
  }

  // --- internals ------------------------------------------------------------------------------

  private async shutdown(retryUntil: AbortSignal | undefined): Promise<void> {
    // Each attempt waits for a lock no longer than stopRetryWait, so the deadline (or a second
    // SIGTERM) ends the stop within about that; a commit already waiting keeps its own timeout.
    if (retryUntil && this.st && !this.settings.readonly) {
      await run(this.db, `PRAGMA busy_timeout = ${Math.trunc(DEFAULTS.stopRetryWait)}`).catch(() => undefined);
    }
    let failure: unknown = await this.finalFlush(retryUntil);
    if (this.st) await Promise.all(Object.values(this.st).map((s: sqlite3.Statement) => finalize(s)));
    await closeDb(this.db).catch((err: unknown) => {
      failure ??= new PfgreyError('E_DB_WRITE', `${this.path}: cannot close database (${sqliteMessage(err)})`, { cause: err });
    });
    if (failure) throw failure;
  }

  private open(): Statements | null {
    if (this.closing) throw new PfgreyError('E_DB_WRITE', `${this.path}: the database is closed`);
    return this.st;
  }

  private async read<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw readError(this.path, err, 'reading');
    }
  }

  protected canCommit(): boolean {
    return this.st !== null;
  }

  protected errorText(err: unknown): string {
    return sqliteMessage(err);
  }

  /** The rows under `keys` and the connection's data_version as of that read, in one statement. */
  private async lookup(st: Statements, keys: readonly string[]): Promise<{ rows: Row[]; version: number }> {
    const rows = await stAll<Row>(st.lookup, [jsonParam(keys)]);
    return { version: rows[0]!.first, rows: rows.slice(1) };
  }

  /**
   * The read and the writes of update(), atomic in two round trips through the thread pool
   * instead of a statement each: the read, then the writes as one statement that runs in a
   * transaction of its own and writes only if no other connection has committed since the read
   * (SQLite's data_version; this connection commits nothing in between, as its commits and
   * updates run one at a time). A batch that deletes (two statements) or that another
   * connection got ahead of is done again in one transaction that takes the write lock first,
   * `decide` called again on what it reads when it changed.
   */
  private async transact(st: Statements, keys: readonly string[], decide: (current: Map<string, Entry>) => StoreWrite[]): Promise<void> {
    const wanted = [...new Set(keys)];
    const decided = (rows: Row[]) => {
      // The last write of a key wins, as one statement may write a key once.
      const writes = new Map<string, Entry | null>();
      for (const w of decide(new Map(rows.map((r) => [r.key, r] as const)))) {
        if ('put' in w) writes.set(w.put.key, w.put);
        else writes.set(w.delete, null);
      }
      const puts: Entry[] = [];
      const dels: string[] = [];
      for (const [key, w] of writes) {
        if (w) puts.push(w);
        else dels.push(key);
      }
      return { puts, dels };
    };
    const failed = (err: unknown) =>
      err instanceof PfgreyError ? err : new PfgreyError('E_DB_WRITE', `${this.path}: cannot write to database (${sqliteMessage(err)})`, { cause: err });
    let read: { rows: Row[]; version: number };
    let plan: { puts: Entry[]; dels: string[] };
    try {
      read = await this.lookup(st, wanted);
      plan = decided(read.rows);
      if (plan.puts.length + plan.dels.length === 0) return;
      if (plan.dels.length === 0 && await stChanges(st.putAll, [jsonParam(plan.puts), read.version]) > 0) return;
      await run(this.db, 'BEGIN IMMEDIATE');
    } catch (err) {
      throw failed(err);
    }
    try {
      const locked = await this.lookup(st, wanted);
      if (locked.version !== read.version) plan = decided(locked.rows);
      if (plan.puts.length > 0) await stRun(st.putAll, [jsonParam(plan.puts), locked.version]);
      if (plan.dels.length > 0) await stRun(st.deleteAll, [jsonParam(plan.dels), locked.version]);
      await run(this.db, 'COMMIT');
    } catch (err) {
      await run(this.db, 'ROLLBACK').catch(() => undefined);
      throw failed(err);
    }
  }

  protected async commit(batch: Array<[string, Write]>): Promise<void> {
    const st = this.st!;
    await run(this.db, 'BEGIN IMMEDIATE');
    try {
      // Binding parameters happens on the main thread, so a large batch is sent a step at a
      // time, each step waiting for its statements: a 100,000-entry commit never holds the
      // event loop for more than one step's binding work.
      for (let i = 0; i < batch.length; i += ENTRIES_PER_STEP) {
        await this.commitStep(st, batch.slice(i, i + ENTRIES_PER_STEP));
      }
      await run(this.db, 'COMMIT');
    } catch (err) {
      await run(this.db, 'ROLLBACK').catch(() => undefined);
      throw err;
    }
  }

  private async commitStep(st: Statements, step: Array<[string, Write]>): Promise<void> {
    const puts: Entry[] = [];
    const dels: string[] = [];
    const checked: unknown[][] = [];
    for (const [key, w] of step) {
      if (w === null) dels.push(key);
      else if (isDeleteIf(w)) checked.push(rowParams(w.expected));
      else puts.push(w);
    }
    const work: Array<Promise<void>> = [];
    // The step's rows in one statement, its deletions in another.
    if (puts.length > 0) work.push(stRun(st.putAll, [jsonParam(puts), null]));
    if (dels.length > 0) work.push(stRun(st.deleteAll, [jsonParam(dels), null]));
    // Keys are unique within a batch, so the order of the statements does not matter.
    const send = (rows: unknown[][], many: sqlite3.Statement, one: sqlite3.Statement) => {
      for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) {
        const slice = rows.slice(i, i + ROWS_PER_STATEMENT);
        if (slice.length === ROWS_PER_STATEMENT) work.push(stRun(many, slice.flat()));
        else for (const row of slice) work.push(stRun(one, row));
      }
    };
    send(checked, st.deleteIfMany, st.deleteIfOne);
    // allSettled, not all: ROLLBACK must not run while statements of this transaction are still
    // queued, or they would run afterwards in autocommit mode and half the batch would stick.
    const results = await Promise.allSettled(work);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}
