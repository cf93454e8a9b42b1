// One daemon per database. Two `pfgrey run` on one file (on different ports, say) would both
// scan, promote and push the same table, each undoing the other's view of what is in pf. SQLite
// keeps the file consistent but cannot say "someone else runs here", so the daemon holds a lock
// of its own beside the database, `<db>.lock`.
//
// The lock is the kernel's: `<db>.lock` is a tiny SQLite file that the daemon opens in
// exclusive locking mode and writes once, so SQLite's fcntl(2) lock on it stays held until the
// daemon closes it or dies (the kernel drops it then, whatever way the process ended). A second
// daemon's write finds it busy and refuses to start. The holder writes its pid into the file's
// header (the user_version field, 4 bytes at offset 60), which the second one reads as plain
// bytes to name it. A pid file alone would outlive a crash and might name another process after
// a reboot; a lock the kernel holds cannot go stale, and two daemons starting at once cannot
// both get it. `pfgrey db` and `pfgrey logd` do not take it: they run beside the daemon.

import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import sqlite3 from 'sqlite3';
import { describe, PfgreyError } from '../errors.js';
import type { Logger } from '../log.js';
import { checkDatabaseFiles, SQLITE_OPEN_NOFOLLOW } from './files.js';

export interface DatabaseLock {
  readonly path: string;
  release(): Promise<void>;
}

/** Offset of the user_version field in an SQLite header (SQLite's file format, section 1.3). */
const USER_VERSION_AT = 60;

function exec(db: sqlite3.Database, sql: string): Promise<void> {
  return new Promise((resolve, reject) => db.exec(sql, (err) => (err ? reject(err) : resolve())));
}

function close(db: sqlite3.Database): Promise<void> {
  return new Promise((resolve) => db.close(() => resolve()));
}

/** The pid the holder wrote into the lock file, read without SQLite (which the lock keeps out). */
async function holderPid(path: string): Promise<number | undefined> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => undefined);
  if (!fh) return undefined;
  try {
    const buf = Buffer.alloc(4);
    const { bytesRead } = await fh.read(buf, 0, 4, USER_VERSION_AT);
    const pid = bytesRead === 4 ? buf.readUInt32BE(0) : 0;
    return pid > 0 ? pid : undefined;
  } finally {
    await fh.close();
  }
}

/**
 * Takes the lock of the database at `dbPath`, or throws E_DB_LOCKED naming the pid of the
 * daemon that holds it. The lock file is checked as the database is (no link followed).
 * Undefined, with a warning, where the lock file cannot be created.
 */
export async function lockDatabase(dbPath: string, log: Logger): Promise<DatabaseLock | undefined> {
  const path = `${dbPath}.lock`;
  await checkDatabaseFiles(path, path, log);
  let db: sqlite3.Database;
  try {
    db = await new Promise<sqlite3.Database>((resolve, reject) => {
      const d: sqlite3.Database = new sqlite3.Database(path,
        sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE | SQLITE_OPEN_NOFOLLOW, (err) => (err ? reject(err) : resolve(d)));
    });
  } catch (err) {
    // A directory this process may not write (links were refused above): the database's own
    // open says what that means for it, in its words; the lock is not what to fix first.
    log.warning(`cannot create ${path} (${describe(err).replace(/^SQLITE_[A-Z_]+: /, '')}): ` +
      'nothing stops a second daemon on this database');
    return undefined;
  }
  try {
    // No journal: nothing but the header is ever written, and no -journal file is left to check.
    await exec(db, 'PRAGMA busy_timeout = 0; PRAGMA journal_mode = OFF; PRAGMA locking_mode = EXCLUSIVE');
    await exec(db, `BEGIN EXCLUSIVE; PRAGMA user_version = ${process.pid}; COMMIT`);
  } catch (err) {
    await close(db);
    if ((err as { code?: string }).code === 'SQLITE_BUSY') {
      const pid = await holderPid(path);
      throw new PfgreyError('E_DB_LOCKED', `${dbPath} is in use by another pfgrey daemon` +
        `${pid ? ` (pid ${pid})` : ''}, which holds ${path}: stop it first, or give this one a --db of its own`);
    }
    throw new PfgreyError('E_DB_LOCKED', `cannot lock ${dbPath} with ${path}: ${describe(err).replace(/^SQLITE_[A-Z_]+: /, '')}`, { cause: err });
  }
  let released: Promise<void> | undefined;
  return { path, release: () => (released ??= close(db)) };
}
