// The greylist store on PostgreSQL: one database that several MX hosts share (README, "Several
// MX hosts"). The same interface as the SQLite store (types.ts) over a pool of connections
// (node-postgres): queued writes committed in batches, one transaction per batch with a
// statement per kind of write however large the batch; an atomic update that no other writer,
// on this host or another, can slip a write into; chunks in key order for the scan.
//
// Keys are held as bytea, the UTF-8 bytes of the key string, which is what SQLite keeps in its
// TEXT column: every key round-trips (the byte strings of src/grey/entry.ts, whose characters
// are bytes 0x00-0xff, included), and bytea sorts by byte value, as SQLite's BINARY collation
// does, whatever the database's encoding and collation. The numbers are bigint: milliseconds
// since the epoch do not fit an integer.
//
// --db takes a URL as libpq reads it: postgres://user:password@host:port/database, or
// postgresql:// with any part left out taken from PGHOST, PGPORT, PGUSER, PGPASSWORD and
// PGDATABASE (node-postgres reads them). The password is never printed: messages name the URL
// with it replaced by ***.

import { createHash } from 'node:crypto';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import pg from 'pg';
import { DEFAULTS } from '../config/defaults.js';
import { PfgreyError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { GroupCommitStore, type GroupCommitSettings } from './group-commit.js';
import { isDeleteIf, overlayKeys, overlayRange, type QueuedWrite } from './pending.js';
import type { OpenStoreOptions } from './sqlite.js';
import type { Abandoned, CloseOptions, Entry, FileProblem, FileStore, StoreWrite } from './types.js';

/** How the store is opened: read-only, or how its group commit runs (sqlite.ts takes the same). */
export type OpenPostgresOptions = Omit<OpenStoreOptions, 'create'>;

/** What sqlite.ts's MIGRATIONS are, counted in pfgrey_schema.version instead of user_version. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE pfgrey_entries (
     key bytea PRIMARY KEY,
     first bigint NOT NULL,
     pass bigint NOT NULL,
     expire bigint NOT NULL,
     bcount bigint NOT NULL,
     pcount bigint NOT NULL
   )`,
  // update()'s `once` names, each written in the transaction it names: a retry whose first
  // try committed with its reply lost finds its name and is not made twice.
  `CREATE TABLE pfgrey_updates (
     id text PRIMARY KEY,
     at bigint NOT NULL
   );
   CREATE INDEX pfgrey_updates_at ON pfgrey_updates (at)`,
];

export const PG_SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Advisory lock classes (the first of pg_advisory_lock's two integers), ours alone by their
 * value: a key's lock (the second integer its hash) held by an update from its read to its
 * commit; the schema's, held while a node creates or migrates it; maintenance's, held by the
 * node that expires and promotes (PostgresMaintenance).
 */
const LOCK_KEY = 0x70666701;
const LOCK_SCHEMA = 0x70666702;
const LOCK_MAINTENANCE = 0x70666703;

/** Rows per statement of a commit: one round trip each, a few milliseconds of encoding. */
const ROWS_PER_STEP = 4096;

/** Times an update is decided again after another writer got in before its write. */
const UPDATE_ATTEMPTS = 20;

const COLUMNS = 'key, first, pass, expire, bcount, pcount';
const TABLE = 'pfgrey_entries';

// bigint (int8) arrives as a string by default; every number here is a safe integer.
const INT8_OID = 20;
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === INT8_OID ? (v: string) => Number(v) : (pg.types.getTypeParser as (o: number, f?: string) => unknown)(oid, format)) as typeof pg.types.getTypeParser,
};

interface Row {
  key: Buffer;
  first: number;
  pass: number;
  expire: number;
  bcount: number;
  pcount: number;
}

const keyBytes = (key: string): Buffer => Buffer.from(key, 'utf8');
const entryOf = (r: Row): Entry => ({ key: r.key.toString('utf8'), first: r.first, pass: r.pass, expire: r.expire, bcount: r.bcount, pcount: r.pcount });

/** Byte order of the keys' UTF-8, as the database sorts them. */
const byBytes = (a: Buffer, b: Buffer) => Buffer.compare(a, b);

/** Rows as the six arrays unnest() takes, sorted by key: two nodes' commits lock rows in one order. */
function columns(entries: readonly Entry[]): unknown[] {
  const rows = entries.map((e) => ({ k: keyBytes(e.key), e })).sort((a, b) => byBytes(a.k, b.k));
  return [rows.map((r) => r.k), ...(['first', 'pass', 'expire', 'bcount', 'pcount'] as const).map((c) => rows.map((r) => r.e[c]))];
}

const UNNEST = 'unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])';
const SQL = {
  get: `SELECT ${COLUMNS} FROM ${TABLE} WHERE key = ANY($1::bytea[])`,
  lockedGet: `SELECT ${COLUMNS} FROM ${TABLE} WHERE key = ANY($1::bytea[]) ORDER BY key FOR UPDATE`,
  upsert: `INSERT INTO ${TABLE} (${COLUMNS}) SELECT * FROM ${UNNEST} ` +
    'ON CONFLICT (key) DO UPDATE SET first = excluded.first, pass = excluded.pass, expire = excluded.expire, ' +
    'bcount = excluded.bcount, pcount = excluded.pcount',
  delete: `DELETE FROM ${TABLE} WHERE key = ANY($1::bytea[])`,
  deleteIf: `DELETE FROM ${TABLE} AS e USING ${UNNEST} AS x(key, first, pass, expire, bcount, pcount) ` +
    'WHERE e.key = x.key AND e.first = x.first AND e.pass = x.pass AND e.expire = x.expire ' +
    'AND e.bcount = x.bcount AND e.pcount = x.pcount',
  firstPage: `SELECT ${COLUMNS} FROM ${TABLE} ORDER BY key LIMIT $1`,
  nextPage: `SELECT ${COLUMNS} FROM ${TABLE} WHERE key > $1 ORDER BY key LIMIT $2`,
  range: `SELECT ${COLUMNS} FROM ${TABLE} WHERE key >= $1 AND key < $2 ORDER BY key`,
  lockKeys: 'SELECT count(pg_advisory_xact_lock($1, h)) FROM unnest($2::int[]) AS h',
  once: 'INSERT INTO pfgrey_updates (id, at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING',
  forget: 'DELETE FROM pfgrey_updates WHERE at < $1',
} as const;

/** `postgres://pfgrey:***@db.example/pfgrey`: the URL as messages may show it. */
export function redactUrl(url: string): string {
  // Up to the last @ of the authority: a password may hold an @ that was not percent-encoded.
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/?#@]*):[^/?#]*@/i, '$1:***@').replace(/([?&](?:ssl)?password=)[^&#]*/gi, '$1***');
}

/**
 * What went wrong, in words: node-postgres's own errors carry the server's message, but a
 * refused connection to a name with several addresses is an AggregateError with none.
 */
export function pgMessage(err: unknown): string {
  const e = err as { message?: unknown; errors?: unknown[]; code?: unknown } | null;
  const msg = typeof e?.message === 'string' ? e.message : String(err);
  if (msg !== '') return msg;
  if (Array.isArray(e?.errors) && e.errors.length > 0) return pgMessage(e.errors[0]);
  return typeof e?.code === 'string' ? e.code : 'unknown error';
}

/** The connection settings every pfgrey connection uses. */
function poolConfig(url: string, max: number): pg.PoolConfig {
  const { idle, interval, count } = DEFAULTS.pgKeepalive;
  return {
    connectionString: url,
    max,
    application_name: 'pfgrey',
    // A dead server or a partition is an error within seconds, as a locked SQLite file is.
    connectionTimeoutMillis: DEFAULTS.busyTimeout,
    statement_timeout: DEFAULTS.busyTimeout,
    keepAlive: true,
    // Every statement here reads or writes by key (the scan's pages too, in key order), which
    // the primary key's index answers. Without this the planner reads the whole table for a
    // batch of a thousand keys whenever its cost estimates say so (a table of some tens of
    // thousands of rows, still cached): 40 ms instead of 5. Only pfgrey's own sessions.
    // And the server probes each session (DEFAULTS.pgKeepalive): a host gone silent midway
    // through an update holds its keys' locks 30 s, not the system's two hours.
    options: `-c enable_seqscan=off -c tcp_keepalives_idle=${seconds(idle)} -c tcp_keepalives_interval=${seconds(interval)} ` +
      `-c tcp_keepalives_count=${count}`,
    types,
  };
}

const seconds = (ms: number) => Math.ceil(ms / 1000);

/**
 * The maintenance election's connection (PostgresMaintenance): the server probes it as every
 * session (poolConfig), so a holder whose host went silent loses the lock within
 * DEFAULTS.pgKeepalive's 30 s, not the system's two hours; and no query on it waits longer
 * than busyTimeout, so a holder cut off from the server says so at its next scan instead of
 * hanging on it.
 */
function maintenanceConfig(url: string): pg.ClientConfig {
  return { ...poolConfig(url, 1), query_timeout: DEFAULTS.busyTimeout };
}

/**
 * tcp_user_timeout (PostgreSQL 12 and later; an older server does without it): the server gives
 * up on a reply the holder's host never acknowledged after as long as the probes take.
 */
async function boundUnacknowledged(c: pg.Client): Promise<void> {
  const { idle, interval, count } = DEFAULTS.pgKeepalive;
  try {
    await c.query(`SET tcp_user_timeout = ${idle + interval * count}`);
  } catch (err) {
    // 42704: undefined_object, an unrecognised parameter.
    if ((err as { code?: unknown }).code !== '42704') throw err;
  }
}

/** The 32-bit lock number of a key (collisions only make two updates wait for each other). */
function keyLock(key: Buffer): number {
  return createHash('sha1').update(key).digest().readInt32BE(0);
}

async function schemaVersion(c: pg.ClientBase): Promise<number | undefined> {
  const exists = await c.query<{ t: string | null }>("SELECT to_regclass('pfgrey_schema')::text AS t");
  if (exists.rows[0]?.t == null) return undefined;
  const r = await c.query<{ version: number }>('SELECT version FROM pfgrey_schema');
  return r.rows[0]?.version ?? 0;
}

function tooNew(shown: string, found: number): PfgreyError {
  const detail = `database schema version ${found} is newer than this pfgrey supports (${PG_SCHEMA_VERSION}); use a newer pfgrey`;
  return new PfgreyError('E_DB_SCHEMA', `${shown}: ${detail}`, { detail });
}

/** Creates or brings the schema up to date, once however many nodes start at the same time. */
async function migrate(c: pg.ClientBase, shown: string): Promise<void> {
  await c.query('BEGIN');
  try {
    await c.query('SELECT pg_advisory_xact_lock($1, 0)', [LOCK_SCHEMA]);
    let v = await schemaVersion(c);
    if (v === undefined) {
      await c.query('CREATE TABLE pfgrey_schema (version integer NOT NULL)');
      await c.query('INSERT INTO pfgrey_schema (version) VALUES (0)');
      v = 0;
    }
    if (v > PG_SCHEMA_VERSION) throw tooNew(shown, v);
    for (let i = v; i < PG_SCHEMA_VERSION; i++) await c.query(MIGRATIONS[i]!);
    if (v < PG_SCHEMA_VERSION) await c.query('UPDATE pfgrey_schema SET version = $1', [PG_SCHEMA_VERSION]);
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/**
 * Connects to the PostgreSQL database `url` names and, unless `readonly`, creates or migrates
 * pfgrey's tables in it. The database itself must exist (createdb). Errors: E_DB_OPEN (cannot
 * connect, no such database, not allowed), E_DB_SCHEMA (written by a newer pfgrey, or older and
 * opened read-only).
 */
export async function openPostgresStore(url: string, opts: OpenPostgresOptions = {}): Promise<PostgresStore> {
  const shown = redactUrl(url);
  const readonly = opts.readonly ?? false;
  const log = opts.log ?? silentLogger;
  const pool = new pg.Pool(poolConfig(url, 4));
  // A connection the server ends while idle (a restart) is reported here, not thrown: the next
  // query gets a new one.
  pool.on('error', (err) => log.debug(`${shown}: idle connection lost: ${pgMessage(err)}`));
  // One lost while checked out between two queries is reported on the connection itself; the
  // next query on it fails, and the connection is then dropped, not pooled again.
  pool.on('connect', (c) => c.on('error', (err) => log.debug(`${shown}: connection lost: ${pgMessage(err)}`)));
  let empty = false;
  try {
    const c = await pool.connect();
    try {
      if (readonly) {
        const v = await schemaVersion(c);
        if (v === undefined || v === 0) empty = true;
        else if (v > PG_SCHEMA_VERSION) throw tooNew(shown, v);
        else if (v < PG_SCHEMA_VERSION) {
          throw new PfgreyError('E_DB_SCHEMA', `${shown}: database schema version ${v} is older than this pfgrey's ` +
            `(${PG_SCHEMA_VERSION}); open it once for writing to upgrade`);
        }
      } else {
        await migrate(c, shown);
      }
    } finally {
      c.release();
    }
  } catch (err) {
    await pool.end().catch(() => undefined);
    if (err instanceof PfgreyError) throw err;
    throw new PfgreyError('E_DB_OPEN', `cannot open ${shown} for ${readonly ? 'reading' : 'writing'}: ${pgMessage(err)}`, { cause: err });
  }
  return new PostgresStore(shown, pool, {
    readonly, empty, log,
    commitDelay: opts.commitDelay ?? DEFAULTS.commitDelay,
    commitBatch: opts.commitBatch ?? DEFAULTS.commitBatch,
    onCommit: opts.onCommit,
  });
}

interface Settings extends GroupCommitSettings {
  /** Opened read-only before any node created the tables: everything reads as empty. */
  empty: boolean;
}

/**
 * The store. It is a FileStore only in shape, so that the daemon holds it as it holds an SQLite
 * file: there is no file underneath, so fileProblem never reports anything and recovery
 * (recover.ts) never runs; a server that goes away is a failing commit, retried.
 */
export class PostgresStore extends GroupCommitStore implements FileStore {
  /** When forgetOldNames next deletes (ms since the epoch). */
  private forgetAt = 0;

  constructor(path: string, private readonly pool: pg.Pool, protected override readonly settings: Settings) {
    super(path, settings);
  }

  async get(key: string): Promise<Entry | undefined> {
    return (await this.getMany([key])).get(key);
  }

  async getMany(keys: readonly string[]): Promise<Map<string, Entry>> {
    return overlayKeys(this.pending, keys, async (wanted) => {
      if (this.settings.empty || wanted.length === 0) return [];
      return this.read(SQL.get, [wanted.map(keyBytes)]);
    });
  }

  update(keys: readonly string[], decide: (current: Map<string, Entry>) => StoreWrite[], once?: string): Promise<boolean> {
    this.writable();
    if (this.settings.empty) return Promise.reject(new PfgreyError('E_DB_WRITE', `${this.path}: the database was opened read-only`));
    return this.exclusive(() => this.transact(keys, decide, once));
  }

  async *chunks(size: number): AsyncIterable<Entry[]> {
    this.open();
    if (this.settings.empty) return;
    const limit = Math.max(1, Math.trunc(size));
    // Keyset pagination: each page starts after the last key of the one before, so a page is an
    // index range whatever the table's size, and rows written meanwhile are neither skipped
    // twice nor read twice.
    let last: Buffer | undefined;
    for (;;) {
      const rows = await this.readRows(last === undefined ? SQL.firstPage : SQL.nextPage, last === undefined ? [limit] : [last, limit]);
      if (rows.length === 0) return;
      last = rows[rows.length - 1]!.key;
      yield rows.map(entryOf);
      if (rows.length < limit) return;
    }
  }

  async tuplesOf(ip: string): Promise<Entry[]> {
    this.open();
    // Every GREY key of `ip` starts with `ip\n`, and '\x0b' follows '\n': the primary key's
    // index answers the range.
    const rows = this.settings.empty ? [] : await this.read(SQL.range, [keyBytes(`${ip}\n`), keyBytes(`${ip}\x0b`)]);
    return overlayRange(this.pending, rows, `${ip}\n`);
  }

  async fileProblem(): Promise<FileProblem | undefined> {
    return undefined;
  }

  async abandon(): Promise<Abandoned> {
    const writes = await this.giveUpQueue();
    return { writes, close: () => (this.closing ??= this.pool.end().catch(() => undefined)) };
  }

  close(opts: CloseOptions = {}): Promise<void> {
    this.closing ??= this.shutdown(opts.retryUntil);
    return this.closing;
  }

  // --- internals ------------------------------------------------------------------------------

  private async shutdown(retryUntil: AbortSignal | undefined): Promise<void> {
    const failure = await this.finalFlush(retryUntil);
    await this.pool.end().catch(() => undefined);
    if (failure) throw failure;
  }

  private open(): void {
    if (this.closing) throw new PfgreyError('E_DB_WRITE', `${this.path}: the database is closed`);
  }

  private async readRows(sql: string, params: unknown[]): Promise<Row[]> {
    try {
      return (await this.pool.query<Row>(sql, params)).rows;
    } catch (err) {
      throw new PfgreyError('E_DB_OPEN', `cannot read ${this.path}: ${pgMessage(err)}`, { cause: err });
    }
  }

  private async read(sql: string, params: unknown[]): Promise<Entry[]> {
    return (await this.readRows(sql, params)).map(entryOf);
  }

  protected canCommit(): boolean {
    return !this.settings.empty;
  }

  protected errorText(err: unknown): string {
    return pgMessage(err);
  }

  /** One transaction: the batch's deletions, conditional deletions and rows, a statement each per step. */
  protected async commit(batch: Array<[string, QueuedWrite]>): Promise<void> {
    const c = await this.pool.connect();
    let broken: unknown;
    try {
      await c.query('BEGIN');
      try {
        for (let i = 0; i < batch.length; i += ROWS_PER_STEP) {
          const puts: Entry[] = [];
          const dels: string[] = [];
          const checked: Entry[] = [];
          for (const [key, w] of batch.slice(i, i + ROWS_PER_STEP)) {
            if (w === null) dels.push(key);
            else if (isDeleteIf(w)) checked.push(w.expected);
            else puts.push(w);
          }
          // Keys are unique within a batch, so the order of the statements does not matter.
          if (dels.length > 0) await c.query(SQL.delete, [dels.map(keyBytes).sort(byBytes)]);
          if (checked.length > 0) await c.query(SQL.deleteIf, columns(checked));
          if (puts.length > 0) await c.query(SQL.upsert, columns(puts));
          await yieldToLoop();
        }
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK').catch((e: unknown) => (broken = e));
        throw err;
      }
    } catch (err) {
      broken ??= isConnectionError(err) ? err : undefined;
      throw err;
    } finally {
      // A connection the server dropped goes, not back into the pool.
      c.release(broken instanceof Error ? broken : undefined);
    }
  }

  /**
   * Deletes update names old enough that no retry can still come (DEFAULTS.updateNameLife),
   * at most once a minute per node: one indexed range delete.
   */
  private async forgetOldNames(c: pg.PoolClient): Promise<void> {
    const now = Date.now();
    if (now < this.forgetAt) return;
    this.forgetAt = now + DEFAULTS.updateNameForget;
    await c.query(SQL.forget, [now - DEFAULTS.updateNameLife]);
  }

  /**
   * update's transaction. Concurrent updates of a key, from this host or another, wait for each
   * other on the key's advisory lock, taken before the read, so each reads what the one before
   * it wrote. Rows that exist are also locked by the read (FOR UPDATE), which keeps another
   * host's group commit off them until the commit. A key read as missing that another host's
   * group commit inserts before this write is noticed (the insert finds the row: xmax is set),
   * and the update is decided again on a new read.
   */
  private async transact(keys: readonly string[], decide: (current: Map<string, Entry>) => StoreWrite[], once: string | undefined): Promise<boolean> {
    const wanted = [...new Set(keys)];
    const bytes = wanted.map(keyBytes);
    const locks = [...new Set(bytes.map(keyLock))].sort((a, b) => a - b);
    const c = await this.pool.connect().catch((err: unknown) => {
      throw new PfgreyError('E_DB_UNREACHABLE', `${this.path}: cannot write to database (${pgMessage(err)})`, { cause: err });
    });
    let broken: Error | undefined;
    try {
      if (once !== undefined) await this.forgetOldNames(c);
      for (let attempt = 1; ; attempt++) {
        await c.query('BEGIN');
        try {
          // A name already there is a transaction that committed (one still under way holds
          // the row, and this insert waits for its end).
          if (once !== undefined && (await c.query(SQL.once, [once, Date.now()])).rowCount === 0) {
            await c.query('ROLLBACK');
            return false;
          }
          if (locks.length > 0) await c.query(SQL.lockKeys, [LOCK_KEY, locks]);
          const rows = bytes.length > 0 ? (await c.query<Row>(SQL.lockedGet, [bytes])).rows.map(entryOf) : [];
          const current = new Map(rows.map((r) => [r.key, r] as const));
          const writes = new Map<string, Entry | null>();
          for (const w of decide(new Map(rows.map((r) => [r.key, { ...r }] as const)))) {
            if ('put' in w) writes.set(w.put.key, { ...w.put });
            else writes.set(w.delete, null);
          }
          const puts = [...writes.values()].filter((w): w is Entry => w !== null);
          const dels = [...writes].filter(([, w]) => w === null).map(([k]) => k);
          let raced = false;
          if (puts.length > 0) {
            const r = await c.query<{ key: Buffer; inserted: boolean }>(`${SQL.upsert} RETURNING key, (xmax = 0) AS inserted`, columns(puts));
            raced = r.rows.some((row) => !row.inserted && !current.has(row.key.toString('utf8')));
          }
          if (dels.length > 0 && !raced) {
            const r = await c.query<{ key: Buffer }>(`${SQL.delete} RETURNING key`, [dels.map(keyBytes).sort(byBytes)]);
            raced = r.rows.some((row) => !current.has(row.key.toString('utf8')));
          }
          if (raced && attempt < UPDATE_ATTEMPTS) {
            await c.query('ROLLBACK');
            continue;
          }
          await c.query('COMMIT');
          return true;
        } catch (err) {
          await c.query('ROLLBACK').catch((e: unknown) => (broken = e as Error));
          throw err;
        }
      }
    } catch (err) {
      const lost = isConnectionError(err);
      if (lost) broken ??= err as Error;
      if (err instanceof PfgreyError) throw err;
      throw new PfgreyError(lost ? 'E_DB_UNREACHABLE' : 'E_DB_WRITE', `${this.path}: cannot write to database (${pgMessage(err)})`, { cause: err });
    } finally {
      c.release(broken);
    }
  }
}

/** An error after which the connection cannot be used again (not an SQL error the server sent). */
function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  // SQLSTATE classes 08 (connection) and 57 (operator intervention: shutdown, terminated).
  return typeof code !== 'string' || /^(08|57)/.test(code) || /^E[A-Z]+$/.test(code);
}

/**
 * The maintenance election: of the nodes sharing a database, the one holding a session-level
 * advisory lock on a connection of its own expires and promotes (the scan's writes); the others
 * only read and publish. When the holder dies its connection drops, the server releases the
 * lock, and the next node to scan takes it. When its host goes silent instead (power off, link
 * down: nothing closes the connection) the server's keepalives end it (maintenanceConfig).
 */
export class PostgresMaintenance {
  private client: pg.Client | undefined;
  private holding = false;
  /** What the last attempt found, so that only a change is logged. */
  private last: 'held' | 'other' | 'none' = 'none';

  constructor(private readonly url: string, private readonly log: Logger) {}

  /** Whether this node runs maintenance this round: it holds the lock, or has just taken it. */
  async turn(): Promise<boolean> {
    const shown = redactUrl(this.url);
    try {
      if (this.holding && this.client) {
        // Still ours while the connection lives; a query proves it does.
        await this.client.query('SELECT 1');
        return true;
      }
      if (!this.client) {
        const c = new pg.Client(maintenanceConfig(this.url));
        // A connection lost between scans is noticed by the next turn's query.
        c.on('error', () => undefined);
        await c.connect();
        this.client = c;
        await boundUnacknowledged(c);
      }
      const r = await this.client.query<{ got: boolean }>('SELECT pg_try_advisory_lock($1, 0) AS got', [LOCK_MAINTENANCE]);
      this.holding = r.rows[0]?.got === true;
    } catch (err) {
      this.drop();
      if (this.last === 'held') this.log.warning(`maintenance: lost the lock in ${shown} (${pgMessage(err)}); another node may take over`);
      this.last = 'none';
      return false;
    }
    if (this.holding && this.last !== 'held') {
      this.log.notice(this.last === 'other'
        ? `maintenance: took over expiry and promotion in ${shown} from the node that held them`
        : `maintenance: this node expires and promotes in ${shown}`);
    } else if (!this.holding && this.last !== 'other') {
      this.log.notice(`maintenance: another node expires and promotes in ${shown}; this one publishes only`);
    }
    this.last = this.holding ? 'held' : 'other';
    return this.holding;
  }

  /** Gives the lock up (closing its connection releases it). */
  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    this.holding = false;
    await c?.end().catch(() => undefined);
  }

  private drop(): void {
    const c = this.client;
    this.client = undefined;
    this.holding = false;
    if (c) void c.end().catch(() => undefined);
  }
}
