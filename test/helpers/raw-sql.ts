// Runs SQL on a database file with the sqlite3 module directly, bypassing the store: how tests
// write rows an older pfgrey (or another program) left behind.

import type { ExecutionContext } from 'ava';
import sqlite3 from 'sqlite3';

export function rawSql(file: string, statements: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const d: sqlite3.Database = new sqlite3.Database(file, (err) => {
      if (err) return reject(err);
      d.exec(statements, (e) => d.close(() => (e ? reject(e) : resolve())));
    });
  });
}

function exec(db: sqlite3.Database, sql: string): Promise<void> {
  return new Promise((resolve, reject) => db.exec(sql, (err) => (err ? reject(err) : resolve())));
}

/**
 * Takes the write lock from a connection of its own, as `pfgrey db -a` or an sqlite3 shell in
 * another process would, and keeps it until `release` (or the end of the test).
 */
export async function holdWriteLock(t: ExecutionContext, file: string): Promise<{ release(): Promise<void> }> {
  const db = await new Promise<sqlite3.Database>((resolve, reject) => {
    const d: sqlite3.Database = new sqlite3.Database(file, sqlite3.OPEN_READWRITE, (err) => (err ? reject(err) : resolve(d)));
  });
  // A daemon may be committing right now: wait for it rather than fail.
  await exec(db, 'PRAGMA busy_timeout = 30000; BEGIN IMMEDIATE');
  let held = true;
  const release = async () => {
    if (!held) return;
    held = false;
    await exec(db, 'ROLLBACK').catch(() => undefined);
    await new Promise<void>((resolve) => db.close(() => resolve()));
  };
  t.teardown(release);
  return { release };
}
